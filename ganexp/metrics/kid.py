"""Kernel Inception Distance (Binkowski et al. 2018, Demystifying MMD GANs, Sec. 4).

Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over
random subsets (100 subsets of 1,000 as in the paper). Unbiased: ~0 for two samples of
one distribution, and it can be slightly negative.
"""
from __future__ import annotations

import torch
from torch import Tensor


def mmd2_poly(x: Tensor, y: Tensor) -> Tensor:
    d, m = x.shape[1], len(x)
    # kernels in float32 (fast), sums in float64: the estimate is a difference of large sums
    kxx, kyy, kxy = ((a @ b.T / d + 1).pow_(3) for a, b in ((x, x), (y, y), (x, y)))
    total = lambda k: k.sum(1).double().sum()  # noqa: E731
    off = lambda k: (total(k) - k.diagonal().double().sum()) / (m * (m - 1))  # noqa: E731
    return off(kxx) + off(kyy) - 2 * total(kxy) / m**2


def kid(real: Tensor, fake: Tensor, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """Mean unbiased MMD^2 over ``num_subsets`` random subsets (fewer samples: the subset shrinks)."""
    real, fake = real.float(), fake.float()
    m = min(subset_size, len(real), len(fake))
    g = torch.Generator().manual_seed(seed)
    vals = [mmd2_poly(real[torch.randperm(len(real), generator=g)[:m].to(real.device)],
                      fake[torch.randperm(len(fake), generator=g)[:m].to(fake.device)]) for _ in range(num_subsets)]
    return float(torch.stack(vals).mean())
