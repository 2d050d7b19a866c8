"""Latent sampling and the ways to look at a trained generator: grids, interpolation
(lerp, slerp; White 2016), the truncation trick (Brock et al. 2019) and vector arithmetic
(Radford et al. 2016, Sec. 6.3)."""
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


def truncate(z: Tensor, threshold: float, generator: torch.Generator | None = None) -> Tensor:
    """Resample entries with |z| > threshold until none is left (BigGAN's truncation trick)."""
    if threshold <= 0:
        raise ConfigError(f"truncation threshold must be > 0, got {threshold}")
    z = z.clone()
    mask = z.abs() > threshold
    while mask.any():
        z[mask] = torch.randn(int(mask.sum()), generator=generator, device=z.device)
        mask = z.abs() > threshold
    return z


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    return a[None] * (1 - t[:, None]) + b[None] * t[:, None]


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation: stays on the shell where Gaussian latents live (White 2016)."""
    omega = torch.arccos(torch.clamp((a / a.norm()) @ (b / b.norm()), -1.0, 1.0))
    so = torch.sin(omega)
    if so.abs() < 1e-6:
        return lerp(a, b, t)
    return (torch.sin((1 - t) * omega)[:, None] * a[None] + torch.sin(t * omega)[:, None] * b[None]) / so


def interpolate(z0: Tensor, z1: Tensor, steps: int, method: str = "slerp") -> Tensor:
    if method not in ("lerp", "slerp"):
        raise ConfigError(f"unknown interpolation '{method}'; choose lerp or slerp")
    t = torch.linspace(0, 1, steps, device=z0.device)
    return (lerp if method == "lerp" else slerp)(z0, z1, t)
