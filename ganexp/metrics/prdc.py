"""Precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics
for Generative Models", Sec. 3; the authors' ``prdc`` package, whose strict inequalities it keeps).

Every real point X_i has a ball of radius NND_k(X_i), the distance to its k-th nearest other real
point (k = 5); generated points Y_j likewise. Precision: the share of Y_j inside some real ball.
Recall: the share of X_i inside some generated ball. Density: (1 / k M) sum_j #{i : Y_j in B(X_i)},
how many real balls hold a generated point on average (an outlier among the real points, whose ball
is large, no longer buys precision). Coverage: the share of real points whose own ball holds a
generated point (robust to generated outliers, unlike recall).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ganexp.metrics.precision_recall import knn_radii


def prdc(real: Tensor, fake: Tensor, k: int = 5, block: int = 1024) -> dict[str, float]:
    """The four numbers of (real, fake) feature sets (N, D) and (M, D), in float64, in blocks of rows."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"prdc with k={k} needs more than {k} real and generated points, got {len(real)} and {len(fake)}")
    real, fake = real.double(), fake.double()
    r_real, r_fake = knn_radii(real, k, block), knn_radii(fake, k, block)
    inside, nearest, recalled = [], [], []
    for j in range(0, len(fake), block):  # per generated point: how many real balls hold it
        inside.append((torch.cdist(fake[j:j + block], real) < r_real[None]).sum(1))
    for i in range(0, len(real), block):  # per real point: its nearest generated point, and any ball it is in
        d = torch.cdist(real[i:i + block], fake)
        nearest.append(d.min(1).values < r_real[i:i + block])
        recalled.append((d < r_fake[None]).any(1))
    count = torch.cat(inside).double()
    return {"precision": float((count > 0).double().mean()), "recall": float(torch.cat(recalled).double().mean()),
            "density": float(count.mean() / k), "coverage": float(torch.cat(nearest).double().mean())}
