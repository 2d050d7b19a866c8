"""Exponential moving average of the generator's weights."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext


class EMA(Hook):
    """EMA of G's weights (Karras et al. 2018, ProGAN, App. A.1; Yazici et al. 2019, Eq. 2):
    theta_ema <- decay * theta_ema + (1 - decay) * theta after every G step from step
    ``start`` on; before it the copy tracks G exactly. Buffers (batch-norm statistics) are
    copied. The EMA generator is what samples, grids, evaluation and `ganexp sample` use.

    ``halflife_images`` replaces the per-step decay by a half-life in training images (Karras et
    al. 2022, EDM, ``ema_halflife_kimg``): decay = 0.5 ** (images per update / half-life), with
    the images of a G step = batch_size * d_steps (the real images D sees), so batch size and D
    steps do not change the averaging window. ``rampup`` (EDM's ``ema_rampup_ratio``) caps the
    half-life at rampup * the images seen before the step, so early weights are soon forgotten."""

    name = "ema"

    def __init__(self, decay: float = 0.999, start: int = 0, halflife_images: int | None = None,
                 rampup: float | None = None):
        require(0.0 <= decay < 1.0, f"ema.decay must be in [0, 1), got {decay}")
        require(start >= 0, f"ema.start must be >= 0, got {start}")
        require(halflife_images is None or halflife_images > 0, f"ema.halflife_images must be > 0 or null, got {halflife_images}")
        require(rampup is None or rampup > 0, f"ema.rampup must be > 0 or null, got {rampup}")
        require(rampup is None or halflife_images is not None, "ema.rampup needs ema.halflife_images")
        self.decay, self.start, self.halflife, self.rampup = decay, start, halflife_images, rampup

    def decay_at(self, step: int) -> float:
        """The decay of the updates after G step ``step`` (0-based)."""
        if self.halflife is None:
            return self.decay
        halflife = self.halflife
        if self.rampup is not None:
            halflife = min(halflife, step * self.images_per_step * self.rampup)
        return 0.5 ** (self.images_per_step / self.updates_per_step / max(halflife, 1e-8))

    def setup(self, ctx: SetupContext) -> None:
        self.images_per_step, self.updates_per_step = ctx.batch_size * ctx.d_steps, ctx.g_steps
        self.G = ctx.G
        self.ema = copy.deepcopy(ctx.G).eval().requires_grad_(False)
        self._params = (list(self.ema.parameters()), list(ctx.G.parameters()))
        self._buffers = (list(self.ema.buffers()), list(ctx.G.buffers()))

    @torch.no_grad()
    def after_g_step(self, step: int) -> None:
        ema, cur = self._params
        if step < self.start:
            torch._foreach_copy_(ema, cur)
        else:
            torch._foreach_lerp_(ema, cur, 1.0 - self.decay_at(step))
        if self._buffers[0]:
            torch._foreach_copy_(*self._buffers)

    def sampling_generator(self, G: nn.Module) -> nn.Module:
        return self.ema

    def scalars(self, step: int) -> dict[str, float]:
        return {"decay": self.decay_at(step) if step >= self.start else 0.0}

    def state_dict(self) -> dict:
        return {"G": self.ema.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state["G"])
