"""Wasserstein GAN critics (Arjovsky et al. 2017; Gulrajani et al. 2017)."""
from __future__ import annotations

from torch import Tensor

from ganexp.hooks import SetupContext, StepContext, Targets
from ganexp.losses.base import Loss
from ganexp.losses.critic import batch_norm_warning, clip_weights_, gradient_penalty


class WGAN(Loss):
    """WGAN (Arjovsky et al. 2017, Alg. 1): critic minimises E[D(G(z))] - E[D(x)], G minimises
    -E[D(G(z))]; after each critic step its weights are clipped to [-clip, clip]."""

    def __init__(self, clip: float = 0.01):
        self.clip = clip
        self.D = None

    @property
    def alters_d_after_step(self) -> bool:  # weight clipping, unless a subclass turns it off
        return self.clip > 0

    def setup(self, ctx: SetupContext) -> None:
        self.D = ctx.D

    def d_loss(self, d_real: Tensor, d_fake: Tensor, t: Targets | None) -> Tensor:
        return d_fake.mean() - d_real.mean()

    def g_loss(self, d_fake: Tensor, t: Targets | None) -> Tensor:
        return -d_fake.mean()

    def after_d_step(self, step: int) -> None:
        clip_weights_(self.D, self.clip)


class WGANGP(WGAN):
    """WGAN-GP (Gulrajani et al. 2017, Alg. 1): the WGAN critic loss plus
    lambda * E[(||grad D(x_hat)|| - 1)^2] on random interpolates; no clipping."""

    #: The penalty is per sample: ``discriminator.norm=auto`` picks layer norm for this critic (Sec. 4).
    auto_d_norm = "layer"
    double_backward = True

    def __init__(self, gp_weight: float = 10.0):
        super().__init__(clip=0.0)
        self.gp_weight = gp_weight

    def setup(self, ctx: SetupContext) -> None:
        super().setup(ctx)
        ctx.note(batch_norm_warning(ctx.D, "loss=wgan_gp"))

    def on_d_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        gp = gradient_penalty(ctx.D, ctx.real, ctx.fake, ctx.y_real if ctx.y_fake is None else ctx.y_fake)
        ctx.logs["loss/gp"] = gp.detach()
        return loss + self.gp_weight * gp

    def after_d_step(self, step: int) -> None:
        pass
