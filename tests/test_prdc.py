"""Precision, recall, density and coverage (ganexp/metrics/prdc.py) against the authors' package (``prdc``
on PyPI, Naeem et al. 2020) on fixed feature sets, and a case worked by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ganexp.metrics.prdc import prdc

def _both(real: np.ndarray, fake: np.ndarray, k: int = 5):
    reference = pytest.importorskip("prdc")  # the authors' package: pip install -e '.[dev]'
    ref = reference.compute_prdc(real, fake, k)
    ours = prdc(torch.from_numpy(real), torch.from_numpy(fake), k, block=97)  # blocks that do not divide the sets
    return {key: float(v) for key, v in ref.items()}, ours


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (0.5, 0.7), (2.0, 1.5)])
def test_matches_the_reference_package(shift, scale):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(600, 12)).astype(np.float32)
    fake = (rng.normal(size=(500, 12)) * scale + shift).astype(np.float32)
    ref, ours = _both(real, fake)
    assert set(ours) == set(ref)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6), key


def test_a_collapsed_generator_has_high_precision_and_low_coverage():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(500, 8)).astype(np.float32)
    fake = (real[:1] + 0.01 * rng.normal(size=(500, 8))).astype(np.float32)  # every sample near one real point
    ref, ours = _both(real, fake)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6), key
    assert ours["precision"] == 1.0 and ours["coverage"] < 0.05 and ours["recall"] < 0.05


def test_by_hand_on_a_line():
    """Real 0, 1, 2, 3, 10 with k = 1: radii 1, 1, 1, 1, 7. Fakes 0.5, 2.5, 9: the reals within their radius of
    0.5 are 0 and 1; of 2.5, 2 and 3; of 9, only 10 (|9 - 3| = 6 < 1 fails). Precision 1, density (2 + 2 + 1)/3;
    coverage: reals whose nearest fake is inside their radius: 0, 1, 2, 3 (10's nearest, 9, is 1 < 7), so 5/5.
    Fake radii (k = 1): 2, 2, 6.5; recall: reals within a fake's radius: 0, 1, 2, 3 (of 0.5 or 2.5), 10 (of 9): 1."""
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    fake = torch.tensor([[0.5], [2.5], [9.0]])
    out = prdc(real, fake, k=1)
    assert out == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 5 / 3, "coverage": 1.0})
    out = prdc(real, torch.tensor([[0.5], [0.6], [0.4]]), k=1)  # all at one end
    assert out["precision"] == 1.0 and out["coverage"] == pytest.approx(2 / 5) and out["density"] == pytest.approx(2.0)
