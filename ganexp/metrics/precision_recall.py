"""Improved precision and recall (Kynkäänniemi et al. 2019, Sec. 2).

Each set's manifold is the union of balls around its points with radius the distance to the
k-th nearest neighbour (k=3). Precision: the share of generated points inside the real
manifold (quality); recall: the share of real points inside the generated one (coverage).
"""
from __future__ import annotations

import torch
from torch import Tensor


def knn_radii(x: Tensor, k: int = 3, block: int = 1024) -> Tensor:
    """Distance from each point to its k-th nearest other point."""
    return torch.cat([torch.cdist(x[i:i + block], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), block)])


def coverage(points: Tensor, centers: Tensor, radii: Tensor, block: int = 1024) -> float:
    """Share of ``points`` inside at least one ball (center, radius)."""
    inside = [(torch.cdist(points[i:i + block], centers) <= radii[None]).any(1) for i in range(0, len(points), block)]
    return float(torch.cat(inside).float().mean())


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    real, fake = real.float(), fake.float()
    return coverage(fake, real, knn_radii(real, k)), coverage(real, fake, knn_radii(fake, k))
