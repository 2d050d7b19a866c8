"""Differentiable augmentation of everything D sees (DiffAugment), in plain torch."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext


def _per_sample(x: Tensor) -> tuple[int, ...]:
    return (len(x),) + (1,) * (x.dim() - 1)


def brightness(x: Tensor, amount: Tensor) -> Tensor:
    """x + amount per sample (the reference draws amount ~ U(-0.5, 0.5))."""
    return x + amount.view(_per_sample(x))


def saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Each pixel's distance from its channel mean scaled by factor (~ U(0, 2)); a no-op for one channel."""
    m = x.mean(dim=1, keepdim=True)
    return (x - m) * factor.view(_per_sample(x)) + m


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Each sample's distance from its own mean scaled by factor (~ U(0.5, 1.5))."""
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - m) * factor.view(_per_sample(x)) + m


def translate(x: Tensor, dy: Tensor, dx: Tensor, max_shift: int) -> Tensor:
    """Content moved by whole pixels (dy down, dx right, per sample, |shift| <= max_shift); what
    enters is zero padding."""
    B, _, H, W = x.shape
    s = max_shift
    pad = F.pad(x, [s, s, s, s]).permute(0, 2, 3, 1)  # B, H+2s, W+2s, C
    rows = torch.arange(H, device=x.device) + s - dy.view(B, 1)  # B, H: the source row of each output row
    cols = torch.arange(W, device=x.device) + s - dx.view(B, 1)
    b = torch.arange(B, device=x.device).view(B, 1, 1)
    return pad[b, rows.view(B, H, 1), cols.view(B, 1, W)].permute(0, 3, 1, 2)


def cutout_mask(shape: torch.Size, cy: Tensor, cx: Tensor, size: tuple[int, int], device) -> Tensor:
    """1 outside, 0 inside the size[0] x size[1] square whose rows start at cy - size[0] // 2
    (columns likewise), clipped at the image border: (B, 1, H, W)."""
    B, _, H, W = shape
    r = torch.arange(H, device=device).view(1, H) - (cy.view(B, 1) - size[0] // 2)
    c = torch.arange(W, device=device).view(1, W) - (cx.view(B, 1) - size[1] // 2)
    inside = ((r >= 0) & (r < size[0])).view(B, H, 1) & ((c >= 0) & (c < size[1])).view(B, 1, W)
    return (~inside).unsqueeze(1)


def cutout(x: Tensor, cy: Tensor, cx: Tensor, size: tuple[int, int]) -> Tensor:
    return x * cutout_mask(x.shape, cy, cx, size, x.device).to(x.dtype)


OPS = ("color", "translation", "cutout")


def augment(x: Tensor, policy: tuple[str, ...], translation: float = 0.125, cutout_ratio: float = 0.5,
            drawn: dict[str, Tensor] | None = None) -> Tensor:
    """The policy's ops in order, each with fresh per-sample draws (recorded in ``drawn`` if given),
    as the authors' DiffAugment_pytorch.py draws them."""
    B, _, H, W = x.shape
    d: dict[str, Tensor] = {} if drawn is None else drawn
    opts = dict(dtype=x.dtype, device=x.device)
    for op in policy:
        if op == "color":
            d["brightness"] = torch.rand(B, **opts) - 0.5
            d["saturation"] = torch.rand(B, **opts) * 2
            d["contrast"] = torch.rand(B, **opts) + 0.5
            x = contrast(saturation(brightness(x, d["brightness"]), d["saturation"]), d["contrast"])
        elif op == "translation":
            sy, sx = int(H * translation + 0.5), int(W * translation + 0.5)
            d["dy"] = torch.randint(-sy, sy + 1, (B,), device=x.device)
            d["dx"] = torch.randint(-sx, sx + 1, (B,), device=x.device)
            x = translate(x, d["dy"], d["dx"], max(sy, sx))
        elif op == "cutout":
            size = (int(H * cutout_ratio + 0.5), int(W * cutout_ratio + 0.5))
            d["cy"] = torch.randint(0, H + (1 - size[0] % 2), (B,), device=x.device)
            d["cx"] = torch.randint(0, W + (1 - size[1] % 2), (B,), device=x.device)
            x = cutout(x, d["cy"], d["cx"], size)
    return x


class DiffAugment(Hook):
    """Differentiable Augmentation (Zhao et al. 2020, Sec. 3; the authors' DiffAugment_pytorch.py):
    every batch D sees, real and fake, in the D step and in the G step, goes through the same
    random, differentiable transformations (fresh draws per sample and per batch), so gradients
    reach G through them and D cannot memorise a small training set. ``policy`` lists them:
    ``color`` (brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5)),
    ``translation`` (up to ``translation`` of the image size in whole pixels, zero padding) and
    ``cutout`` (a square of ``cutout`` of the image size set to zero); on the command line
``tricks.diffaugment.policy=[color,cutout]``. Penalties (r1,
    gradient_penalty, dragan, wgan_gp) call D directly and see un-augmented inputs."""

    name = "diffaugment"

    def __init__(self, policy: str | list[str] = "color,translation,cutout", translation: float = 0.125, cutout: float = 0.5):
        ops = tuple(str(p).strip() for p in (policy if isinstance(policy, (list, tuple)) else str(policy).split(",")))
        ops = tuple(p for p in ops if p)
        bad = [p for p in ops if p not in OPS]
        require(not bad, f"diffaugment.policy: unknown op {', '.join(bad)}; use a comma-separated subset of {', '.join(OPS)}")
        require(0 <= translation < 1 and 0 <= cutout < 1,
                f"diffaugment.translation and .cutout must be in [0, 1), got {translation}, {cutout}")
        self.policy, self.translation, self.cutout = ops, translation, cutout

    def setup(self, ctx: SetupContext) -> None:
        require(ctx.info.kind != "points", f"diffaugment augments images; '{ctx.info.name}' is 2D points")

    def on_d_input(self, x: Tensor, step: int) -> Tensor:
        return augment(x, self.policy, self.translation, self.cutout)
