"""The original GAN game and its non-saturating variant (Goodfellow et al. 2014)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ganexp.hooks import Targets, as_float_tensor
from ganexp.losses.base import Loss


def bce(logits: Tensor, target: Tensor | float) -> Tensor:
    """Binary cross-entropy on logits (log-sum-exp form: no sigmoid then log)."""
    return F.binary_cross_entropy_with_logits(logits, as_float_tensor(target, logits))


class GAN(Loss):
    """Minimax GAN (Goodfellow et al. 2014, Eq. 1).

    D: -E[log D(x)] - E[log(1 - D(G(z)))];  G minimises E[log(1 - D(G(z)))] (saturating).
    With targets, G's loss is minus D's loss on the fake batch, so label tricks apply to it too.
    """

    default_targets = (1.0, 0.0, 1.0)

    def d_loss(self, d_real: Tensor, d_fake: Tensor, t: Targets) -> Tensor:
        return bce(d_real, t.real) + bce(d_fake, t.fake)

    def g_loss(self, d_fake: Tensor, t: Targets) -> Tensor:
        return -bce(d_fake, t.fake)


class NSGAN(GAN):
    """Non-saturating GAN (Goodfellow et al. 2014, Sec. 3): G minimises -E[log D(G(z))]."""

    def g_loss(self, d_fake: Tensor, t: Targets) -> Tensor:
        return bce(d_fake, t.gen)
