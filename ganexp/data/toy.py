"""2D toy distributions, held on the device and sampled there (no DataLoader).

- ``ring``: Mao et al. 2017 (LSGAN, mixture-of-Gaussians experiment) and Metz et al. 2017 (unrolled GAN): 8 Gaussians on a circle.
- ``grid``: Srivastava et al. 2017 (VEEGAN) and Lin et al. 2018 (PacGAN): 25 Gaussians on {-4,-2,0,2,4}^2, std 0.05.
- ``swiss_roll``: the 2D Swiss roll of Gulrajani et al. 2017 (WGAN-GP toy experiments).
- ``iris``: two features of Fisher's Iris data as bundled with scikit-learn (Fisher 1936; a tiny real 2D set for a miniGAN).
"""
from __future__ import annotations

import math

import torch

from ganexp.data.base import DataInfo, TensorData
from ganexp.errors import ConfigError


class MixtureData(TensorData):
    """Points from a mixture of isotropic Gaussians; ``centers`` and ``std`` drive mode-coverage metrics."""

    def __init__(self, centers: torch.Tensor, std: float, num_points: int, seed: int, name: str):
        if num_points < 1 or std < 0:
            raise ConfigError(f"dataset '{name}' needs num_points >= 1 and std >= 0, got {num_points} and {std}")
        g = torch.Generator().manual_seed(seed)
        mode = torch.randint(len(centers), (num_points,), generator=g)
        x = centers[mode] + std * torch.randn(num_points, centers.shape[1], generator=g)
        super().__init__(x, mode, DataInfo("points", (centers.shape[1],), 0, name))
        self.centers, self.std = centers, std

    def to(self, device):
        self.centers = self.centers.to(device)
        return super().to(device)


def ring_centers(modes: int, radius: float) -> torch.Tensor:
    angle = torch.arange(modes, dtype=torch.float32) * (2 * math.pi / modes)
    return radius * torch.stack([angle.cos(), angle.sin()], dim=1)


def grid_centers(size: int, spacing: float) -> torch.Tensor:
    """``size`` x ``size`` points ``spacing`` apart, centred on the origin (5, 2.0 -> {-4,-2,0,2,4}^2)."""
    axis = (torch.arange(size, dtype=torch.float32) - (size - 1) / 2) * spacing
    return torch.cartesian_prod(axis, axis)


def ring(modes: int = 8, radius: float = 2.0, std: float = 0.02, num_points: int = 50_000,
         seed: int = 0, name: str = "ring8") -> MixtureData:
    """``modes`` Gaussians evenly spaced on a circle (the LSGAN / unrolled-GAN benchmark)."""
    return MixtureData(ring_centers(modes, radius), std, num_points, seed, name)


def grid(size: int = 5, spacing: float = 2.0, std: float = 0.05, num_points: int = 50_000,
         seed: int = 0, name: str = "grid25") -> MixtureData:
    """``size``^2 Gaussians on a square grid (the VEEGAN / PacGAN 25-mode benchmark)."""
    return MixtureData(grid_centers(size, spacing), std, num_points, seed, name)


def swiss_roll(noise: float = 0.25, scale: float = 7.5, num_points: int = 50_000, seed: int = 0,
               name: str = "swiss_roll") -> TensorData:
    """scikit-learn's Swiss roll (t in [1.5pi, 4.5pi], point t(cos t, sin t) plus N(0, noise^2)),
    its two spiral coordinates divided by ``scale``, as in WGAN-GP's toy code."""
    g = torch.Generator().manual_seed(seed)
    t = 1.5 * math.pi * (1 + 2 * torch.rand(num_points, generator=g))
    x = torch.stack([t * t.cos(), t * t.sin()], dim=1) + noise * torch.randn(num_points, 2, generator=g)
    return TensorData(x / scale, None, DataInfo("points", (2,), 0, name))


def iris(features: tuple[int, int] = (2, 3), standardize: bool = True, name: str = "iris") -> TensorData:
    """150 Iris flowers, two of the four measurements (default petal length and width: setosa forms a
    separate cluster), with the species as labels (3 classes). ``standardize`` gives zero mean, unit std."""
    from sklearn.datasets import load_iris

    if len(features) != 2 or not all(0 <= f < 4 for f in features):
        raise ConfigError(f"dataset.features must be two column indices in 0..3 "
                          f"(sepal length, sepal width, petal length, petal width), got {list(features)}")
    bunch = load_iris()
    x = torch.tensor(bunch.data[:, list(features)], dtype=torch.float32)
    if standardize:
        x = (x - x.mean(0)) / x.std(0)
    return TensorData(x, torch.tensor(bunch.target, dtype=torch.int64), DataInfo("points", (2,), 3, name))
