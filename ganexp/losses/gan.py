"""The original GAN game and its non-saturating variant (Goodfellow et al. 2014), plain and with R1."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ganexp.errors import require
from ganexp.hooks import SetupContext, StepContext, Targets, as_float_tensor
from ganexp.losses.base import Loss
from ganexp.losses.penalty import R1


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


class NSGANR1(NSGAN):
    """The non-saturating loss with R1 on D: gamma/2 * E[||grad_x D(x)||^2] at the reals (Mescheder et
    al. 2018, Eq. 9), computed lazily on every ``every``-th D step and scaled by ``every`` (Karras et al.
    2020, whose StyleGAN2 trains with this loss). Being the loss's, the penalty stays when ``tricks=[...]``
    is changed; ``gamma: 0`` turns it off, and ``tricks=[r1]`` replaces it (with a note: one R1, the
    trick's). ``discriminator.norm=auto`` builds D without normalisation for it, as StyleGAN2's D: batch
    statistics would mix the per-sample gradients R1 penalises."""

    auto_d_norm = "none"
    option = "nsgan_r1"

    def __init__(self, gamma: float = 1.0, every: int = 4):
        super().__init__()
        require(every >= 1, f"loss.every must be >= 1 (R1 on one D step in every), got {every}")
        self.r1 = R1(gamma, every)
        self.r1.log_key = "loss/r1"
        self.active = True

    @property
    def double_backward(self) -> bool:  # only with R1 on (train.sync_bn refuses a double backward)
        return bool(self.r1.gamma)

    def setup(self, ctx: SetupContext) -> None:
        if any(isinstance(t, R1) for t in ctx.tricks):  # one R1, with the trick's settings
            self.active = False
            ctx.note("note: tricks=[r1] replaces the R1 of loss=nsgan_r1 (one penalty, with tricks.r1's gamma and every)")
        elif self.r1.gamma:
            self.r1.setup(ctx)

    def on_d_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        return self.r1.on_d_loss(loss, ctx) if self.active and self.r1.gamma else loss

    def state_dict(self) -> dict:
        return self.r1.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.r1.load_state_dict(state)
