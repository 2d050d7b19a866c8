"""2D toy distributions: mode centres, spread and proportions, from the real configs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ganexp.data import TensorData
from ganexp.errors import ConfigError
from ganexp.metrics.modes import mode_coverage
from tests.conftest import load_dataset


def check_mixture(data, centers: torch.Tensor, std: float) -> None:
    """Each point's nearest centre is its own mode; per-mode means, spread and counts match the spec."""
    x, mode = data.x, data.y
    assert torch.allclose(data.centers, centers, atol=1e-6) and data.std == std
    assert torch.equal(torch.cdist(x, centers).argmin(1), mode)
    counts = torch.bincount(mode, minlength=len(centers)).float()
    expected = len(x) / len(centers)
    assert (counts - expected).abs().max() < 5 * math.sqrt(expected)  # multinomial, 5 sigma
    means = torch.stack([x[mode == k].mean(0) for k in range(len(centers))])
    assert (means - centers).abs().max() < 5 * std / math.sqrt(counts.min())
    resid = x - centers[mode]
    assert resid.std(0) == pytest.approx([std, std], rel=0.03)
    assert not data.info.is_image and data.info.shape == (2,)


def test_ring8_is_eight_gaussians_on_a_circle():
    data = load_dataset("ring8")
    angles = torch.arange(8) * (2 * math.pi / 8)
    check_mixture(data, 2.0 * torch.stack([angles.cos(), angles.sin()], 1), 0.02)
    assert len(data) == 50_000


def test_grid25_is_the_veegan_grid():
    data = load_dataset("grid25")
    axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    check_mixture(data, torch.cartesian_prod(axis, axis), 0.05)


@pytest.mark.parametrize("option, modes", [("ring8", 8), ("grid25", 25)])
def test_real_samples_score_full_coverage_on_their_own_modes(option, modes):
    """The mode-coverage metric reads ``centers`` and ``std``; the data itself must score perfectly."""
    data = load_dataset(option)
    r = mode_coverage(data.take(2500)[0], data.centers, data.std)
    assert r["modes"] == modes and r["reverse_kl"] < 0.01
    assert r["hq_percent"] == pytest.approx(100 * (1 - math.exp(-4.5)), abs=0.8)  # P(|N(0, I)| <= 3) in 2D


def test_radius_std_and_size_are_config_values():
    data = load_dataset("ring8", "dataset.radius=3", "dataset.std=0.1", "dataset.num_points=2000", "dataset.modes=4")
    assert len(data) == 2000 and data.centers.shape == (4, 2)
    assert torch.allclose(data.centers.norm(dim=1), torch.full((4,), 3.0))
    assert (data.x - data.centers[data.y]).std().item() == pytest.approx(0.1, rel=0.1)
    assert len(load_dataset("grid25", "dataset.size=3", "dataset.num_points=100").centers) == 9


def test_same_seed_same_points():
    assert torch.equal(load_dataset("grid25", "dataset.num_points=100").x, load_dataset("grid25", "dataset.num_points=100").x)
    assert not torch.equal(load_dataset("grid25", "dataset.num_points=100").x, load_dataset("grid25", "dataset.num_points=100", "dataset.seed=1").x)


def test_swiss_roll_lies_on_the_spiral():
    exact = load_dataset("swiss_roll", "dataset.noise=0", "dataset.num_points=5000")
    p = exact.x * 7.5
    t = p.norm(dim=1)  # the point is t (cos t, sin t)
    assert t.min() >= 1.5 * math.pi - 1e-4 and t.max() <= 4.5 * math.pi + 1e-4
    assert torch.allclose(p, torch.stack([t * t.cos(), t * t.sin()], 1), atol=1e-3)
    assert exact.y is None and exact.info.num_classes == 0


def test_swiss_roll_matches_scikit_learn_statistics():
    """WGAN-GP's toy data: make_swiss_roll(noise=0.25), columns x and z, divided by 7.5."""
    from sklearn.datasets import make_swiss_roll

    ref = make_swiss_roll(50_000, noise=0.25, random_state=0)[0][:, [0, 2]] / 7.5
    ours = load_dataset("swiss_roll").x.numpy()
    assert np.abs(ours.mean(0) - ref.mean(0)).max() < 0.03
    assert np.abs(np.cov(ours.T) - np.cov(ref.T)).max() < 0.03


def test_iris_two_features_with_species_labels():
    from sklearn.datasets import load_iris

    raw = load_dataset("iris", "dataset.standardize=false")
    assert torch.allclose(raw.x, torch.tensor(load_iris().data[:, [2, 3]], dtype=torch.float32))
    assert torch.bincount(raw.y).tolist() == [50, 50, 50] and raw.info.num_classes == 3
    assert raw.x[raw.y == 0, 0].max() < raw.x[raw.y != 0, 0].min()  # setosa's short petals: a separate cluster
    std = load_dataset("iris")
    assert torch.allclose(std.x.mean(0), torch.zeros(2), atol=1e-5) and torch.allclose(std.x.std(0), torch.ones(2))
    assert load_dataset("iris", "dataset.features=[0,1]", "dataset.standardize=false").x[0].tolist() == pytest.approx([5.1, 3.5])
    with pytest.raises(ConfigError, match="two column indices in 0..3"):
        load_dataset("iris", "dataset.features=[0,4]")


@pytest.mark.parametrize("option", ["ring8", "grid25", "swiss_roll", "iris"])
def test_toy_sets_are_held_as_tensors_without_a_loader(option):
    data = load_dataset(option).to(torch.device("cpu"))
    assert isinstance(data, TensorData) and data.x.dtype == torch.float32
    x, _ = data.sample(64)
    assert x.shape == (64, 2)
    first, _ = data.take(10)
    assert torch.equal(first, data.x[:10])
