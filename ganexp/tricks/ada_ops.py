"""ADA's non-leaking augmentation pipeline (Karras et al. 2020, "Training GANs with Limited Data",
App. B; NVlabs/stylegan2-ada-pytorch ``training/augment.py``, preset 'bgc'), in plain torch.

Each op is drawn per sample and applied with probability p (``where(rand < p, draw, identity)``); p is a
tensor, so adapting it never syncs with the host. The geometric ops compose into one 3x3 matrix per
sample (the inverse map, output pixel -> input pixel, in pixels about the image centre) and the image is
resampled once, bilinearly, with reflection at the borders (``grid_sample``); at whole-pixel offsets
(x-flip, 90-degree rotations, integer translation) bilinear sampling returns the pixels themselves.
The colour ops compose into one 4x4 matrix on (R, G, B, 1) (one channel: its luma row). Both are
differentiable in the image, so G's gradient passes through every op.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
OPS = GEOMETRIC + COLOR
#: The reference's strengths: xint_max 0.125, scale_std 0.2, rotate_max 1 (x pi), aniso_std 0.2,
#: xfrac_std 0.125, brightness_std 0.2, contrast_std 0.5, hue_max 1 (x pi), saturation_std 1.
STRENGTH = dict(xint=0.125, scale=0.2, rotate=1.0, aniso=0.2, xfrac=0.125, brightness=0.2, contrast=0.5, hue=1.0,
                saturation=1.0)


def _mat(rows: list[list], like: Tensor) -> Tensor:
    """A batch of matrices from rows of per-sample tensors or numbers."""
    B = like.shape[0]
    return torch.stack([torch.stack([e if isinstance(e, Tensor) else like.new_full((B,), float(e)) for e in r], -1)
                        for r in rows], -2)


def translate2d(tx, ty, like):
    return _mat([[1, 0, tx], [0, 1, ty], [0, 0, 1]], like)


def scale2d(sx, sy, like):
    return _mat([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], like)


def rotate2d(t, like):
    return _mat([[torch.cos(t), -torch.sin(t), 0], [torch.sin(t), torch.cos(t), 0], [0, 0, 1]], like)


def _gate(value: Tensor, identity: float, p: Tensor, drawn: dict, name: str) -> Tensor:
    """``value`` where rand < p, else the identity value; records the mask and the result."""
    applied = torch.rand(value.shape[0], device=value.device) < p
    drawn[name] = applied
    mask = applied.view(-1, *([1] * (value.dim() - 1)))
    return torch.where(mask, value, torch.full_like(value, identity))


def geometric(x: Tensor, p: Tensor, ops: tuple[str, ...], drawn: dict) -> Tensor:
    """The inverse geometric map of each sample, (B, 3, 3), in pixels about the image centre."""
    B, _, H, W = x.shape
    dev, one = x.device, torch.ones(B, device=x.device)
    G = torch.eye(3, device=dev).repeat(B, 1, 1)
    if "xflip" in ops:
        i = _gate(torch.randint(0, 2, (B,), device=dev).float(), 0, p, drawn, "xflip")
        G = G @ scale2d(1 - 2 * i, 1, one)
    if "rotate90" in ops:
        i = _gate(torch.randint(0, 4, (B,), device=dev).float(), 0, p, drawn, "rotate90")
        G = G @ rotate2d(-math.pi / 2 * i, one)
    if "xint" in ops:
        t = _gate((torch.rand(B, 2, device=dev) * 2 - 1) * STRENGTH["xint"], 0, p, drawn, "xint")
        G = G @ translate2d(torch.round(t[:, 0] * W), torch.round(t[:, 1] * H), one)
    if "scale" in ops:
        s = _gate(torch.exp2(torch.randn(B, device=dev) * STRENGTH["scale"]), 1, p, drawn, "scale")
        G = G @ scale2d(s, s, one)
    p_rot = 1 - torch.sqrt((1 - p).clamp(0, 1))  # two rotations, so that some rotation happens with p
    if "rotate" in ops:
        t = _gate((torch.rand(B, device=dev) * 2 - 1) * math.pi * STRENGTH["rotate"], 0, p_rot, drawn, "rotate")
        G = G @ rotate2d(-t, one)  # before the anisotropic scaling
    if "aniso" in ops:
        s = _gate(torch.exp2(torch.randn(B, device=dev) * STRENGTH["aniso"]), 1, p, drawn, "aniso")
        G = G @ scale2d(s, 1 / s, one)
    if "rotate" in ops:
        t = _gate((torch.rand(B, device=dev) * 2 - 1) * math.pi * STRENGTH["rotate"], 0, p_rot, drawn, "rotate_after")
        G = G @ rotate2d(-t, one)  # after it
    if "xfrac" in ops:
        t = _gate(torch.randn(B, 2, device=dev) * STRENGTH["xfrac"], 0, p, drawn, "xfrac")
        G = G @ translate2d(t[:, 0] * W, t[:, 1] * H, one)
    return G


def resample(x: Tensor, G_inv: Tensor) -> Tensor:
    """x sampled at G_inv (output pixel -> input pixel about the centre), bilinear, reflected borders."""
    B, _, H, W = x.shape
    to_unit = torch.diag(torch.tensor([2 / W, 2 / H, 1.0], device=x.device))  # pixels -> grid_sample's [-1, 1]
    theta = (to_unit @ G_inv @ torch.linalg.inv(to_unit))[:, :2].to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def color(x: Tensor, p: Tensor, ops: tuple[str, ...], drawn: dict) -> Tensor:
    """The colour transform of each sample, (B, 4, 4) on (R, G, B, 1)."""
    B, dev = x.shape[0], x.device
    one = torch.ones(B, device=dev)
    C = torch.eye(4, device=dev).repeat(B, 1, 1)
    v = torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev) / math.sqrt(3)  # the luma axis
    vv = torch.outer(v, v)
    if "brightness" in ops:
        b = _gate(torch.randn(B, device=dev) * STRENGTH["brightness"], 0, p, drawn, "brightness")
        C = _mat([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], one) @ C
    if "contrast" in ops:
        c = _gate(torch.exp2(torch.randn(B, device=dev) * STRENGTH["contrast"]), 1, p, drawn, "contrast")
        C = _mat([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], one) @ C
    if "lumaflip" in ops:
        i = _gate(torch.randint(0, 2, (B,), device=dev).float(), 0, p, drawn, "lumaflip")
        C = (torch.eye(4, device=dev) - 2 * vv * i.view(B, 1, 1)) @ C  # Householder reflection
    if "hue" in ops:
        t = _gate((torch.rand(B, device=dev) * 2 - 1) * math.pi * STRENGTH["hue"], 0, p, drawn, "hue")
        C = rotate_about(v[:3], t) @ C
    if "saturation" in ops:
        s = _gate(torch.exp2(torch.randn(B, device=dev) * STRENGTH["saturation"]), 1, p, drawn, "saturation")
        C = (vv + (torch.eye(4, device=dev) - vv) * s.view(B, 1, 1)) @ C
    return C


def rotate_about(axis: Tensor, theta: Tensor) -> Tensor:
    """(B, 4, 4) rotations by theta about a unit 3D axis (Rodrigues)."""
    a = axis
    K = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], device=theta.device)
    s, c = torch.sin(theta).view(-1, 1, 1), torch.cos(theta).view(-1, 1, 1)
    R = torch.eye(3, device=theta.device) + s * K + (1 - c) * (K @ K)
    out = torch.eye(4, device=theta.device).repeat(len(theta), 1, 1)
    out[:, :3, :3] = R
    return out


def apply_color(x: Tensor, C: Tensor) -> Tensor:
    B, ch, H, W = x.shape
    C = C.to(x.dtype)
    if ch == 3:
        return (C[:, :3, :3] @ x.reshape(B, 3, H * W) + C[:, :3, 3:]).reshape(B, 3, H, W)
    if ch == 1:  # the mean of the R, G, B rows acting on a grey pixel (r = g = b = x)
        m = C[:, :3, :].mean(dim=1, keepdim=True)
        return x * m[:, :, :3].sum(dim=2, keepdim=True)[..., None] + m[:, :, 3:][..., None]
    raise ValueError(f"ada's colour ops need 1 or 3 channels, got {ch}")


def augment(x: Tensor, p: Tensor | float, ops: tuple[str, ...] = OPS, drawn: dict | None = None) -> Tensor:
    """x (B, C, H, W) through the listed ops, each applied per sample with probability p."""
    d: dict = {} if drawn is None else drawn
    p = torch.as_tensor(p, device=x.device, dtype=torch.float32)
    if any(o in GEOMETRIC for o in ops):
        x = resample(x, geometric(x, p, ops, d))
    if any(o in COLOR for o in ops):
        x = apply_color(x, color(x, p, ops, d))
    return x
