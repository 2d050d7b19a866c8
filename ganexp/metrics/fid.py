"""Fréchet distance between Gaussians fitted to features (Heusel et al. 2017, TTUR, Eq. 6).

FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)). Features are streamed into running
sums in float64, so memory is O(D^2) whatever the sample count.
"""
from __future__ import annotations

import torch
from torch import Tensor


class FeatureStats:
    """Running mean and covariance of streamed feature batches (float64 sums)."""

    def __init__(self):
        self.n, self.sum, self.outer = 0, None, None

    def update(self, f: Tensor) -> None:
        f = f.detach().double()
        if self.sum is None:
            self.sum = torch.zeros(f.shape[1], dtype=torch.float64, device=f.device)
            self.outer = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=f.device)
        self.n += len(f)
        self.sum += f.sum(0)
        self.outer += f.T @ f

    def mean_cov(self) -> tuple[Tensor, Tensor]:
        mu = self.sum / self.n
        cov = (self.outer - self.n * torch.outer(mu, mu)) / max(self.n - 1, 1)
        return mu.cpu(), cov.cpu()


def _sqrtm_psd(s: Tensor) -> Tensor:
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def fid_from_stats(mu1: Tensor, s1: Tensor, mu2: Tensor, s2: Tensor) -> float:
    """FID of two Gaussians. Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2), a symmetric
    PSD matrix: eigh is stable where eigvals of S1 S2 gives tiny negative values."""
    mu1, s1, mu2, s2 = (t.double() for t in (mu1, s1, mu2, s2))
    r = _sqrtm_psd(s1)
    m = r @ s2 @ r
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * tr_sqrt)


def fid_from_feats(f1: Tensor, f2: Tensor) -> float:
    """FID between two (N, D) feature sets."""
    a, b = FeatureStats(), FeatureStats()
    a.update(f1)
    b.update(f2)
    return fid_from_stats(*a.mean_cov(), *b.mean_cov())
