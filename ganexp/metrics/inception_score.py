"""Inception Score (Salimans et al. 2016, Sec. 4): exp(E_x KL(p(y|x) || p(y))), over splits.

Streamed: each split keeps only the sum of p(y|x) and the sum of p log p, so memory does not
grow with the sample count. With C classes, IS lies in [1, C]; C means confident predictions
spread evenly over the classes.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


class SplitScores:
    """Per-split sums for the Inception Score; samples go to splits in order (contiguous chunks)."""

    def __init__(self, total: int, splits: int = 10):
        self.total, self.splits, self.seen = total, max(1, min(splits, total)), 0
        self.p_sum = self.plogp = self.count = None

    def update(self, logits: Tensor) -> None:
        logp = torch.log_softmax(logits.double(), dim=1)
        p = logp.exp()
        if self.p_sum is None:
            self.p_sum = torch.zeros(self.splits, logits.shape[1], dtype=torch.float64, device=logits.device)
            self.plogp = torch.zeros(self.splits, dtype=torch.float64, device=logits.device)
            self.count = torch.zeros(self.splits, dtype=torch.float64, device=logits.device)
        idx = torch.arange(self.seen, self.seen + len(p), device=p.device) * self.splits // self.total
        idx = idx.clamp(max=self.splits - 1)
        self.seen += len(p)
        self.p_sum.index_add_(0, idx, p)
        self.plogp.index_add_(0, idx, (p * logp).sum(1))
        self.count.index_add_(0, idx, torch.ones_like(idx, dtype=torch.float64))

    def score(self) -> tuple[float, float]:
        """(mean, std) of the per-split scores."""
        n = self.count.clamp(min=1)
        marginal = self.p_sum / n[:, None]
        # E_x KL(p(y|x) || p(y)) = E_x sum p log p - sum_y p(y) log p(y)
        kl = self.plogp / n - (marginal * marginal.clamp(min=1e-300).log()).sum(1)
        s = kl.exp()
        return float(s.mean()), float(s.std()) if len(s) > 1 else 0.0


def inception_score(logits: Tensor, splits: int = 10) -> float:
    """IS of an (N, C) logit matrix, split into ``splits`` contiguous chunks."""
    acc = SplitScores(len(logits), splits)
    acc.update(logits)
    return acc.score()[0]


def max_score(num_classes: int) -> float:
    return float(num_classes) if num_classes else math.nan
