"""Paths and edits in latent space for looking at a trained generator: interpolation (lerp,
slerp; White 2016), the truncation trick (Brock et al. 2019); vector arithmetic (Radford et al.
2016, Sec. 6.3) is a sum of latents in ``generate``."""
from __future__ import annotations

import torch
from torch import Tensor

from ganexp.errors import ConfigError


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
