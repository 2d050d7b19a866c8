"""The pure metric functions against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg

from ganexp.data.toy import ring_centers
from ganexp.metrics import FUNCTIONS
from ganexp.metrics.fid import FeatureStats, fid_from_feats, fid_from_stats
from ganexp.metrics.inception_score import SplitScores, inception_score
from ganexp.metrics.kid import kid, mmd2_poly
from ganexp.metrics.modes import mode_coverage, reverse_kl_uniform, stacked_labels, stacked_mode_coverage
from ganexp.metrics.precision_recall import precision_recall
from tests.conftest import fid_by_hand, is_by_hand


def test_fid_of_a_sample_with_itself_is_zero_and_a_shift_adds_its_squared_norm():
    f = torch.randn(3000, 16, generator=torch.Generator().manual_seed(0))
    assert abs(fid_from_feats(f, f)) < 1e-8
    shift = torch.zeros(16)
    shift[:3] = torch.tensor([1.0, 2.0, 2.0])  # ||c||^2 = 9: covariances are equal, only the means move
    assert fid_from_feats(f, f + shift) == pytest.approx(9.0, abs=1e-6)
    assert fid_from_feats(f, f + 2 * shift) == pytest.approx(36.0, abs=1e-6)


def test_fid_matches_the_scipy_formula_and_streaming_matches_one_batch():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(2000, 8, generator=g)
    b = torch.randn(2000, 8, generator=g) @ torch.randn(8, 8, generator=g) + 0.5
    mu1, mu2 = a.double().mean(0).numpy(), b.double().mean(0).numpy()
    s1, s2 = np.cov(a.double().numpy(), rowvar=False), np.cov(b.double().numpy(), rowvar=False)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert fid_from_feats(a, b) == pytest.approx(expected, rel=1e-8)
    assert fid_by_hand(a, b) == pytest.approx(expected, rel=1e-8)  # the tests' own reference, checked here
    assert is_by_hand(50 * torch.eye(10)[torch.arange(1000) % 5], 1) == pytest.approx(5.0, rel=1e-6)
    streamed = FeatureStats()
    for chunk in b.split(333):
        streamed.update(chunk)
    one = FeatureStats()
    one.update(a)
    assert fid_from_stats(*one.mean_cov(), *streamed.mean_cov()) == pytest.approx(expected, rel=1e-8)


def test_inception_score_of_confident_uniform_logits_is_the_number_of_classes():
    logits = 50 * torch.eye(10).repeat(100, 1)  # each split of 100 rows holds every class 10 times
    assert inception_score(logits, splits=10) == pytest.approx(10.0, rel=1e-6)
    assert inception_score(50 * torch.eye(10)[[3] * 500], splits=10) == pytest.approx(1.0, abs=1e-6)
    half = 50 * torch.eye(10)[torch.arange(1000) % 5]  # confident, five classes used evenly
    assert inception_score(half, splits=1) == pytest.approx(5.0, rel=1e-6)
    assert inception_score(torch.zeros(100, 10), splits=1) == pytest.approx(1.0)  # unsure: p(y|x) = p(y)


def test_inception_score_streamed_in_batches_equals_one_batch():
    logits = torch.randn(1000, 10, generator=torch.Generator().manual_seed(0)) * 3
    acc = SplitScores(1000, 10)
    for chunk in logits.split(128):  # batches straddle split boundaries
        acc.update(chunk)
    assert acc.score()[0] == pytest.approx(inception_score(logits, 10), rel=1e-12)


def test_mmd_with_the_cubic_kernel_by_hand():
    # d = 1, k(a, b) = (ab + 1)^3; x = {0, 1}, y = {0, 2}: off-diagonal k(0,1) = k(0,2) = 1;
    # cross terms 1, 1, 1, 27 -> mean 7.5; MMD^2 = 1 + 1 - 2 * 7.5 = -13
    assert float(mmd2_poly(torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [2.0]]))) == pytest.approx(-13.0)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g)
    same, shifted = kid(a, b, num_subsets=20, subset_size=500), kid(a, b + 1, num_subsets=20, subset_size=500)
    assert abs(same) < 0.02 and shifted > 1.0


def test_precision_recall_on_a_line_of_points():
    real = torch.arange(100.0)[:, None]  # k = 3: every real ball has radius 3
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    fake = torch.cat([real[:50], real[:50] + 1000])  # half on the data, half far away
    p, r = precision_recall(real, fake)
    assert p == 0.5  # the far half is outside the real manifold
    assert r == pytest.approx(0.53)  # fake balls around 0..49 (radius 3) cover real 0..52


def test_mode_coverage_on_hand_built_points():
    centers, std = ring_centers(8, 2.0), 0.02
    far = centers[0] * 1.5  # nearest to mode 0, but 50 std away: not high quality
    points = torch.cat([centers[:4].repeat_interleave(500, 0), far.repeat(500, 1)])
    r = mode_coverage(points, centers, std)
    p = torch.tensor([0.4, 0.2, 0.2, 0.2])  # nearest-mode histogram of all 2,500 samples
    assert r == {"modes": 4.0, "hq_percent": pytest.approx(80.0),
                 "reverse_kl": pytest.approx(math.log(8) + float((p * p.log()).sum()))}
    # 10 samples on mode 5 are high quality, but below 0.2 * 2500 / 8 = 62.5: not a captured mode
    points[-10:] = centers[5] + torch.tensor([2 * std, 0.0])  # 2 std away: still high quality
    r = mode_coverage(points, centers, std)
    p = torch.tensor([990.0, 500, 500, 500, 10]) / 2500
    assert r["modes"] == 4.0 and r["hq_percent"] == pytest.approx(80.4)
    assert r["reverse_kl"] == pytest.approx(math.log(8) + float((p * p.log()).sum()))
    collapsed = mode_coverage(points[:1].repeat(2500, 1), centers, std)
    assert collapsed == {"modes": 1.0, "hq_percent": 100.0, "reverse_kl": pytest.approx(math.log(8))}


def test_reverse_kl_and_stacked_modes():
    assert reverse_kl_uniform(torch.tensor([5, 5, 5, 5])) == pytest.approx(0.0)
    assert reverse_kl_uniform(torch.tensor([8, 0, 0, 0])) == pytest.approx(math.log(4))
    assert stacked_labels(torch.tensor([[1, 2, 3], [9, 0, 9]])).tolist() == [123, 909]
    assert stacked_mode_coverage(torch.arange(1000)) == {"modes": 1000.0, "kl": pytest.approx(0.0, abs=1e-12)}
    assert stacked_mode_coverage(torch.full((26000,), 7)) == {"modes": 1.0, "kl": pytest.approx(math.log(1000))}
    assert set(FUNCTIONS) == {"fid", "kid", "is", "pr", "modes", "stacked_modes"}
