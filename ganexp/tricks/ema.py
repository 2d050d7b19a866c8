"""Exponential moving average of the generator's weights."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ganexp.hooks import Hook
from ganexp.tricks.common import require


class EMA(Hook):
    """EMA of G's weights (Karras et al. 2018, ProGAN, App. A.1; Yazici et al. 2019, Eq. 2):
    theta_ema <- decay * theta_ema + (1 - decay) * theta after every G step from step
    ``start`` on; before it the copy tracks G exactly. Buffers (batch-norm statistics) are
    copied. The EMA generator is what samples, grids, evaluation and `ganexp sample` use."""

    name = "ema"

    def __init__(self, decay: float = 0.999, start: int = 0):
        require(0.0 <= decay < 1.0, f"ema.decay must be in [0, 1), got {decay}")
        require(start >= 0, f"ema.start must be >= 0, got {start}")
        self.decay, self.start = decay, start

    def setup(self, run) -> None:
        self.G = run.G
        self.ema = copy.deepcopy(run.G).eval().requires_grad_(False)
        self._params = (list(self.ema.parameters()), list(run.G.parameters()))
        self._buffers = (list(self.ema.buffers()), list(run.G.buffers()))

    @torch.no_grad()
    def after_g_step(self, step: int) -> None:
        ema, cur = self._params
        if step < self.start:
            torch._foreach_copy_(ema, cur)
        else:
            torch._foreach_lerp_(ema, cur, 1.0 - self.decay)
        if self._buffers[0]:
            torch._foreach_copy_(*self._buffers)

    def sampling_generator(self, G: nn.Module) -> nn.Module:
        return self.ema

    def scalars(self, step: int) -> dict[str, float]:
        return {"decay": self.decay if step >= self.start else 0.0}

    def state_dict(self) -> dict:
        return {"G": self.ema.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state["G"])
