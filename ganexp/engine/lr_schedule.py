"""Learning-rate schedules: the lr of G step ``step`` as one small function of the step
(nanoGPT's ``get_lr``). Both players follow it, D through all its steps of that G step."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

KINDS = ("constant", "warmup", "linear", "cosine")


def lr_factor(step: int, steps: int, kind: str = "constant", warmup: int = 0) -> float:
    """The multiplier of the configured lr at G step ``step`` (0-based) of ``steps``: a linear
    warm-up (step + 1) / warmup over the first ``warmup`` steps, then 1 (constant, warmup),
    1 - p (linear) or (1 + cos(pi p)) / 2 (cosine, Loshchilov & Hutter 2017), with
    p = (step - warmup) / (steps - warmup) the progress after the warm-up: 0 at train.steps."""
    if step < warmup:
        return (step + 1) / warmup
    if kind in ("constant", "warmup"):
        return 1.0
    p = min(1.0, (step - warmup) / max(1, steps - warmup))
    return 1.0 - p if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * p))


@dataclass
class LRSchedule:
    """Sets each optimizer's lr to ``initial_lr * lr_factor(step)`` before the G step ``step``.
    A function of the step (which checkpoints hold) and of the configured lr, so a resumed run
    continues it exactly and a resume with another schedule applies that one."""

    kind: str
    steps: int
    warmup: int = 0

    def factor(self, step: int) -> float:
        return lr_factor(step, self.steps, self.kind, self.warmup)

    def attach(self, *opts: torch.optim.Optimizer) -> None:
        """Records the configured lr as ``initial_lr`` (torch's lr_scheduler convention)."""
        for opt in opts:
            for group in opt.param_groups:
                group["initial_lr"] = group["lr"]

    def apply(self, step: int, *opts: torch.optim.Optimizer) -> None:
        f = self.factor(step)
        for opt in opts:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * f
