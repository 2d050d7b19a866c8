"""Hinge loss (Lim & Ye 2017; Miyato et al. 2018, Eq. 16-17)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ganexp.hooks import Targets
from ganexp.losses.base import Loss


class Hinge(Loss):
    """D: E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))];  G: -E[D(G(z))]."""

    def d_loss(self, d_real: Tensor, d_fake: Tensor, t: Targets | None) -> Tensor:
        return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()

    def g_loss(self, d_fake: Tensor, t: Targets | None) -> Tensor:
        return -d_fake.mean()
