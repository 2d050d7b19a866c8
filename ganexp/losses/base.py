"""Adversarial losses are hooks with two pure functions of D's logits."""
from __future__ import annotations

import torch
from torch import Tensor

from ganexp.hooks import Hook, Targets


class Loss(Hook):
    """``d_loss`` and ``g_loss`` take D's raw outputs (logits), never probabilities."""

    name = "loss"
    #: Losses whose terms are targets (labels) a label trick may change; None for critics.
    default_targets: tuple[float, float, float] | None = None
    #: What ``discriminator.norm=auto`` builds D with for this loss: batch norm, unless the loss has a
    #: per-sample gradient penalty on D (WGAN-GP: layer norm; R1: none).
    auto_d_norm: str = "batch"

    def targets(self, n: int, device: torch.device) -> Targets | None:
        if self.default_targets is None:
            return None
        real, fake, gen = self.default_targets
        return Targets(real, fake, gen)

    def d_loss(self, d_real: Tensor, d_fake: Tensor, t: Targets | None) -> Tensor:
        raise NotImplementedError

    def g_loss(self, d_fake: Tensor, t: Targets | None) -> Tensor:
        raise NotImplementedError
