"""The generator's input: latents z from a prior (normal, uniform, or the sphere of radius
sqrt(dim)) and, for conditional models, class labels."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ganexp.errors import ConfigError

PRIORS = ("normal", "uniform", "sphere")


class Latent:
    """Draws z from the prior (and class labels when the models are conditional)."""

    def __init__(self, dim: int, prior: str = "normal", num_classes: int = 0, device: torch.device | str = "cpu"):
        if prior not in PRIORS:
            raise ConfigError(f"unknown latent prior '{prior}'; choose one of {', '.join(PRIORS)}")
        self.dim, self.prior, self.num_classes, self.device = dim, prior, num_classes, torch.device(device)

    def z(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        kw = dict(device=self.device if generator is None else generator.device, generator=generator)
        if self.prior == "uniform":
            z = torch.rand(n, self.dim, **kw) * 2 - 1
        else:
            z = torch.randn(n, self.dim, **kw)
            if self.prior == "sphere":  # unit norm scaled by sqrt(dim): same typical norm as N(0, I)
                z = z / z.norm(dim=1, keepdim=True) * math.sqrt(self.dim)
        return z.to(self.device)

    def labels(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        if not self.num_classes:
            return None
        gen_dev = self.device if generator is None else generator.device
        return torch.randint(self.num_classes, (n,), device=gen_dev, generator=generator).to(self.device)

    def sample(self, n: int) -> tuple[Tensor, Tensor | None]:
        return self.z(n), self.labels(n)

    def fixed(self, n: int, seed: int) -> tuple[Tensor, Tensor | None]:
        """A reproducible batch for sample grids; labels cycle through the classes row by row."""
        g = torch.Generator().manual_seed(seed)
        z = self.z(n, g)
        y = (torch.arange(n) % self.num_classes).to(self.device) if self.num_classes else None
        return z, y
