"""Path-length regularisation of G (Karras et al. 2020, StyleGAN2, Sec. 3.2, Eq. 4)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext, StepContext


def path_lengths(G: nn.Module, z: Tensor, y: Tensor | None, noise: Tensor | None = None) -> Tensor:
    """||J_w^T n||_2 per sample, n ~ N(0, I) / sqrt(H W) an image-space direction, J the Jacobian of
    G's synthesis in its styles w (B, num_ws, w_dim): the vector-Jacobian product is the gradient of
    <G(w), n> in w; the squared norm is summed over w_dim and averaged over the num_ws copies (the
    reference's ``pl_grads.square().sum(2).mean(1).sqrt()``)."""
    ws = G.ws(z, y)
    if not ws.requires_grad:  # a frozen mapping network: differentiate in w all the same
        ws = ws.detach().requires_grad_(True)
    img = G.synthesis(ws)
    if noise is None:
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
    (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
    return grad.square().sum(2).mean(1).sqrt()


class PathLength(Hook):
    """Lazy path-length regularisation (Karras et al. 2020, StyleGAN2, Sec. 3.2, Eq. 4): on every ``every``-th G step (4), on a batch of
    batch / ``batch_shrink`` fresh latents, weight * E[(||J_w^T n|| - a)^2] times ``every`` joins G's loss;
    a is the running mean of the lengths (a <- a + decay (mean length - a), decay 0.01), so G is pushed
    toward a fixed-size step in image space per step in W, whatever that size is. Needs a style G with
    ``ws(z, y)`` and ``synthesis(ws)`` (model=stylegan2). Logs the penalty and a."""

    name = "path_length"

    def __init__(self, weight: float = 2.0, every: int = 4, decay: float = 0.01, batch_shrink: int = 2):
        require(weight >= 0, f"path_length.weight must be >= 0, got {weight}")
        require(every >= 1, f"path_length.every must be >= 1, got {every}")
        require(0 < decay <= 1, f"path_length.decay must be in (0, 1], got {decay}")
        require(batch_shrink >= 1, f"path_length.batch_shrink must be >= 1, got {batch_shrink}")
        self.weight, self.every, self.decay, self.shrink = weight, every, decay, batch_shrink
        self.pl_mean, self.g_count, self._last = torch.zeros(()), 0, None

    def setup(self, ctx: SetupContext) -> None:
        G = ctx.G
        require(callable(getattr(G, "ws", None)) and callable(getattr(G, "synthesis", None)),
                f"path_length regularises a style generator's W space; {type(G).__name__} has none: use model=stylegan2")
        self.latent, self.n = ctx.latent, max(1, ctx.local_batch // self.shrink)
        self.pl_mean = self.pl_mean.to(ctx.device)

    def penalty(self, G: nn.Module, z: Tensor, y: Tensor | None, noise: Tensor | None = None) -> Tensor:
        """E[(length - a)^2] with a updated from this batch's mean length first (as the reference)."""
        lengths = path_lengths(G, z, y, noise)
        self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), self.decay)
        return (lengths - self.pl_mean).square().mean()

    def on_g_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        due = self.g_count % self.every == 0
        self.g_count += 1
        if due and self.weight > 0:
            z = self.latent.z(self.n).to(loss.device)
            y = ctx.y_fake[:self.n] if ctx.y_fake is not None else None
            p = self.penalty(ctx.G, z, y)
            self._last = p.detach()
            loss = loss + self.every * self.weight * p
        if self._last is not None:
            ctx.logs[f"trick/{self.name}/value"] = self._last
            ctx.logs[f"trick/{self.name}/mean"] = self.pl_mean
        return loss

    def state_dict(self) -> dict:
        return {"pl_mean": self.pl_mean, "g_count": self.g_count}

    def load_state_dict(self, state: dict) -> None:
        self.pl_mean = state["pl_mean"].to(self.pl_mean.device)
        self.g_count = int(state.get("g_count", 0))
