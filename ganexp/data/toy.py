"""2D toy distributions (Mao et al. 2017, LSGAN, Sec. 4.4; Metz et al. 2017): generated on the device."""
from __future__ import annotations

import math

import torch

from ganexp.data.base import DataInfo, TensorData


class MixtureData(TensorData):
    """Points from a mixture of isotropic Gaussians; ``centers`` and ``std`` drive mode-coverage metrics."""

    def __init__(self, centers: torch.Tensor, std: float, num_points: int, seed: int, name: str):
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


def ring(modes: int = 8, radius: float = 2.0, std: float = 0.02, num_points: int = 50_000,
         seed: int = 0, name: str = "ring8") -> MixtureData:
    """``modes`` Gaussians evenly spaced on a circle (the LSGAN / unrolled-GAN benchmark)."""
    return MixtureData(ring_centers(modes, radius), std, num_points, seed, name)
