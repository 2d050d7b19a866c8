"""Penalties shared by losses and tricks: pure functions of a critic and its inputs."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def batch_norm_warning(D: nn.Module, who: str) -> str | None:
    """A gradient penalty is per sample; batch norm makes D(x_i) depend on the whole batch, so the
    penalised gradient is not the one the paper constrains (Gulrajani et al. 2017, Sec. 4)."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules()):
        return (f"warning: {who} penalises per-sample gradients of D, but D uses batch norm (batch statistics mix "
                f"the samples); use discriminator.norm=layer, instance or none")
    return None


def _grad_norm(D: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
    """Per-sample ||grad_x D(x)||, always in fp32: the penalties run inside the step's autocast, and a
    double backward through D in bf16 is noise that lazy penalties multiply by ``every``."""
    with torch.autocast(x.device.type, enabled=False):
        x = x.detach().float().requires_grad_(True)
        out = D(x, y)
        (g,) = torch.autograd.grad(out.float().sum(), x, create_graph=True)
        return g.flatten(1).norm(2, dim=1)


def interpolates(real: Tensor, fake: Tensor) -> Tensor:
    """Random points on straight lines between real and fake samples (Gulrajani et al. 2017, Alg. 1)."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    return eps * real.detach() + (1 - eps) * fake.detach().to(real.dtype)


def gradient_penalty(D: nn.Module, real: Tensor, fake: Tensor, y: Tensor | None = None, target: float = 1.0) -> Tensor:
    """E[(||grad D(x_hat)|| - K)^2] on interpolates x_hat (WGAN-GP, Gulrajani et al. 2017, Eq. 3)."""
    return (_grad_norm(D, interpolates(real, fake), y) - target).pow(2).mean()


def r1_penalty(D: nn.Module, real: Tensor, y: Tensor | None = None) -> Tensor:
    """E[||grad D(x)||^2] on real data (Mescheder et al. 2018, Eq. 9, without the gamma/2)."""
    return _grad_norm(D, real, y).pow(2).mean()


def dragan_penalty(D: nn.Module, real: Tensor, y: Tensor | None = None, c: float = 0.5, target: float = 1.0) -> Tensor:
    """E[(||grad D(x_hat)|| - K)^2] at x_hat = x + alpha * delta, delta ~ U(0, c * std(x)) per entry and
    alpha ~ U(0, 1) per sample: Kodali et al. 2017 (arXiv:1705.07215v5, Eq. 4) as the authors'
    reference code computes it (perturbed X_p = X + c std(X) U, interpolates X + alpha (X_p - X))."""
    delta = c * real.std() * torch.rand_like(real)
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    return (_grad_norm(D, real + alpha * delta, y) - target).pow(2).mean()


@torch.no_grad()
def clip_weights_(module: nn.Module, c: float) -> None:
    """Clamp every parameter to [-c, c] (WGAN, Arjovsky et al. 2017, Alg. 1 line 7)."""
    for p in module.parameters():
        p.clamp_(-c, c)
