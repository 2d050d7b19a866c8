"""Training-recipe options (issue 14): lazy regularisation, learning-rate schedules and
gradient clipping, EMA by half-life, against numbers computed by hand."""
from __future__ import annotations

import pytest
import torch

from ganexp import checkpoint
from ganexp.build import build_run
from ganexp.engine import train
from ganexp.errors import ConfigError
from ganexp.hooks import StepContext
from ganexp.tricks import penalties
from ganexp.tricks.penalties import DRAGAN, R1, GradientPenalty
from tests.test_losses import Linear2D

RING = ["dataset=ring8", "model=mlp"]


# --- lazy regularisation ------------------------------------------------------------------

@pytest.mark.parametrize("make, weight", [
    (lambda k: GradientPenalty(weight=2.0, target=3.0, every=k), 2.0 * (5 - 3) ** 2),
    (lambda k: R1(gamma=4.0, every=k), 4.0 / 2 * 25),
    (lambda k: DRAGAN(weight=10.0, target=1.0, every=k), 10.0 * (5 - 1) ** 2),
])
def test_lazy_penalty_applies_on_one_of_k_d_steps_times_k(make, weight):
    """On a linear critic (||grad D|| = 5 everywhere) each penalty is known; at every=4 the D loss
    gains 4x it on D steps 0 and 4 of 8 and nothing on the others; at every=1 it gains it on each."""
    D = Linear2D([3.0, 4.0])
    ctx = lambda: StepContext(0, None, D, torch.randn(16, 2), None, torch.randn(16, 2), None)  # noqa: E731
    lazy, eager = make(4), make(1)
    added = [lazy.on_d_loss(torch.tensor(1.0), ctx()).item() - 1.0 for _ in range(8)]
    assert added == pytest.approx([4 * weight, 0, 0, 0, 4 * weight, 0, 0, 0], rel=1e-5)
    assert [eager.on_d_loss(torch.tensor(1.0), ctx()).item() - 1.0 for _ in range(3)] == pytest.approx([weight] * 3, rel=1e-5)


def test_lazy_r1_counts_d_steps_not_g_steps_and_resumes_exactly(cfg_factory, monkeypatch, tmp_path):
    """With 2 D steps per G step, 4 G steps are 8 D steps: every=4 computes R1 on 2 of them. The count
    is in the checkpoint, so a resumed run continues the cycle instead of restarting it."""
    calls = []
    real_r1 = penalties.r1_penalty
    monkeypatch.setattr(penalties, "r1_penalty", lambda *a: calls.append(1) or real_r1(*a))
    cfg = cfg_factory(*RING, "tricks=[r1]", "tricks.r1.every=4", "optimizer.d_steps=2", "train.steps=3")
    train(build_run(cfg))
    assert len(calls) == 2  # D steps 0 and 4 of 0..5
    saved = checkpoint.load(str(tmp_path / "run"))
    assert saved["hooks"]["r1"] == {"d_count": 6}
    calls.clear()
    cfg = cfg_factory(*RING, "tricks=[r1]", "tricks.r1.every=4", "optimizer.d_steps=2", "train.steps=6",
                      f"resume={tmp_path / 'run'}")
    train(build_run(cfg))
    assert len(calls) == 1  # D step 8 of 6..11 (a count restarted at 0 would compute it on D steps 6 and 10)
    assert checkpoint.load(str(tmp_path / "run"))["hooks"]["r1"] == {"d_count": 12}


def test_lazy_every_must_be_positive(cfg_factory):
    with pytest.raises(ConfigError, match="r1.every must be >= 1, got 0"):
        build_run(cfg_factory(*RING, "tricks=[r1]", "tricks.r1.every=0"))
