"""Penalties for any loss: gradient penalties on D, weight clipping, orthogonal regularisation
of G, historical averaging. Each adds to the D (or G) loss and logs its size."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext, StepContext
from ganexp.losses import WGAN, WGANGP
from ganexp.losses.critic import batch_norm_warning, clip_weights_, dragan_penalty, gradient_penalty
from ganexp.losses.penalty import R1, LazyPenalty


def _labels(ctx: StepContext) -> Tensor | None:
    return ctx.y_real if ctx.y_fake is None else ctx.y_fake


class GradientPenalty(LazyPenalty):
    """WGAN-GP's penalty for any loss (Gulrajani et al. 2017, Eq. 3):
    weight * E[(||grad_x D(x_hat)|| - K)^2] on random interpolates x_hat of real and fake;
    ``every`` > 1 makes it lazy (Karras et al. 2020)."""

    name = "gradient_penalty"

    def __init__(self, weight: float = 10.0, target: float = 1.0, every: int = 1):
        super().__init__(every)
        self.weight, self.target, self.scale = weight, target, weight

    def setup(self, ctx: SetupContext) -> None:
        require(not isinstance(ctx.loss, WGANGP),
                "gradient_penalty repeats the penalty loss=wgan_gp already has; use loss=wgan_gp alone or loss=wgan with the trick")
        super().setup(ctx)

    def penalty(self, ctx: StepContext) -> Tensor:
        return gradient_penalty(ctx.D, ctx.real, ctx.fake, _labels(ctx), self.target)


class DRAGAN(LazyPenalty):
    """DRAGAN (Kodali et al. 2017, Eq. 4 with the reference code's perturbation): weight *
    E[(||grad D(x + alpha delta)|| - K)^2], delta ~ U(0, c * std(x)) per entry, alpha ~ U(0, 1) per
    sample, around the real data; ``every`` > 1 makes it lazy (Karras et al. 2020)."""

    name = "dragan"

    def __init__(self, weight: float = 10.0, c: float = 0.5, target: float = 1.0, every: int = 1):
        super().__init__(every)
        self.weight, self.c, self.target, self.scale = weight, c, target, weight

    def penalty(self, ctx: StepContext) -> Tensor:
        return dragan_penalty(ctx.D, ctx.real, ctx.y_real, self.c, self.target)


class WeightClip(Hook):
    """Weight clipping (Arjovsky et al. 2017, Alg. 1 line 7) for any loss: D's parameters are
    clamped to [-clip, clip] after every D step."""

    name = "weight_clip"
    alters_d_after_step = True

    def __init__(self, clip: float = 0.01):
        require(clip > 0, f"weight_clip.clip must be > 0, got {clip}")
        self.clip = clip

    def setup(self, ctx: SetupContext) -> None:
        clipping = isinstance(ctx.loss, WGAN) and ctx.loss.clip > 0
        require(not clipping, "weight_clip repeats the clipping loss=wgan already does; set loss.clip instead")
        self.D = ctx.D

    def after_d_step(self, step: int) -> None:
        clip_weights_(self.D, self.clip)

    @torch.no_grad()
    def scalars(self, step: int) -> dict[str, Tensor]:
        at_edge = [(p.abs() >= self.clip * 0.999).float().sum() for p in self.D.parameters()]
        return {"at_clip_fraction": torch.stack(at_edge).sum() / sum(p.numel() for p in self.D.parameters())}


def _raw_weight(m: nn.Module) -> Tensor:
    """A layer's trained weight as a (filters, fan-in) matrix; under spectral norm its unnormalised original."""
    w = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
    if isinstance(m, nn.ConvTranspose2d):
        w = w.transpose(0, 1)
    return w.flatten(1)


def orthogonal_penalty(weights: list[Tensor]) -> Tensor:
    """sum_W ||W W^T * (1 - I)||_F^2 over the rows (filters) of each W (Brock et al. 2019, Eq. 3)."""
    total = weights[0].new_zeros(())
    for w in weights:
        gram = w @ w.t()
        total = total + (gram - torch.diag_embed(gram.diagonal())).pow(2).sum()
    return total


class OrthogonalReg(Hook):
    """BigGAN's orthogonal regularisation of G (Brock et al. 2019, Eq. 3):
    beta * ||W W^T * (1 - I)||_F^2 over every convolution and linear layer of G; it pushes
    filters apart without constraining their norms."""

    name = "orthogonal_reg"

    def __init__(self, beta: float = 1e-4):
        self.beta = beta

    def setup(self, ctx: SetupContext) -> None:
        self.layers = [m for m in ctx.G.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
        require(bool(self.layers), f"orthogonal_reg needs convolution or linear layers in G; {type(ctx.G).__name__} has none")

    def on_g_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        r = orthogonal_penalty([_raw_weight(m) for m in self.layers])
        ctx.logs[f"trick/{self.name}/value"] = r.detach()
        return loss + self.beta * r


class HistoricalAveraging(Hook):
    """Historical averaging (Salimans et al. 2016, Sec. 3.3): each player's loss gains
    lambda_t * ||theta - (1/t) sum_i theta[i]||^2, the distance to the average of all its past
    parameters. lambda_t falls linearly from ``weight`` to 0 over ``decay_steps`` (0: constant),
    strong exploration first and plain exploitation at the end."""

    name = "historical_averaging"

    def __init__(self, weight: float = 1e-2, decay_steps: int = 0, g: bool = True, d: bool = True):
        require(g or d, "historical_averaging needs g=true or d=true")
        require(decay_steps >= 0, f"historical_averaging.decay_steps must be >= 0, got {decay_steps}")
        self.weight, self.decay_steps, self.players = weight, decay_steps, [p for p, on in (("g", g), ("d", d)) if on]

    def setup(self, ctx: SetupContext) -> None:
        models = {"g": ctx.G, "d": ctx.D}
        self.params = {k: [p for p in models[k].parameters() if p.requires_grad] for k in self.players}
        self.avg = {k: [p.detach().clone() for p in ps] for k, ps in self.params.items()}
        self.count = {k: 1 for k in self.players}

    def weight_at(self, step: int) -> float:
        if not self.decay_steps:
            return self.weight
        return self.weight * max(0.0, 1.0 - step / self.decay_steps)

    def _add(self, who: str, loss: Tensor, ctx: StepContext) -> Tensor:
        w = self.weight_at(ctx.step)
        if who not in self.params or w == 0:
            return loss
        dist = sum((p - a).pow(2).sum() for p, a in zip(self.params[who], self.avg[who]))
        ctx.logs[f"trick/{self.name}/{who}"] = dist.detach()
        return loss + w * dist

    @torch.no_grad()
    def _update(self, who: str) -> None:
        if who in self.params:
            self.count[who] += 1
            torch._foreach_lerp_(self.avg[who], [p.detach() for p in self.params[who]], 1.0 / self.count[who])

    def on_d_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        return self._add("d", loss, ctx)

    def on_g_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        return self._add("g", loss, ctx)

    def after_d_step(self, step: int) -> None:
        self._update("d")

    def after_g_step(self, step: int) -> None:
        self._update("g")

    def scalars(self, step: int) -> dict[str, float]:
        return {"weight": self.weight_at(step)}

    def state_dict(self) -> dict:
        return {"avg": self.avg, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        for k in self.players:
            for a, s in zip(self.avg[k], state["avg"][k]):
                a.copy_(s)
            self.count[k] = int(state["count"][k])
