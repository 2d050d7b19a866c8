"""`ganexp sample mode=steer`: a latent walk that performs an image edit (Jahanian, Chai & Isola,
"On the 'steerability' of generative adversarial networks", ICLR 2020).

The linear walk of Eq. 1 learns one direction w for a frozen G:

    w* = argmin_w  E_{z, alpha} [ L(G(z + alpha w), edit(G(z), alpha)) ]

with L a masked L2 loss: pixels that the edit leaves undefined (what a shift or a zoom-out brings
in from outside the image) do not count. Each edit maps a batch in [-1, 1] and one alpha per
sample to (target, mask); the target is computed without gradients, only w is learned.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from ganexp.data import DataInfo
from ganexp.engine import checkpoint
from ganexp.errors import ConfigError
from ganexp.models.latent import Latent
from ganexp.rundir.console import console


def _affine(x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
    """Resample x through per-sample affine maps (output coords -> input coords, in [-1, 1]);
    the mask is 1 where every bilinear tap falls inside the image."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(torch.ones_like(x[:, :1]), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out, (inside > 1 - 1e-4).to(x.dtype).expand_as(x)


def _theta(a: Tensor, b: Tensor, c: Tensor, d: Tensor, tx: Tensor, ty: Tensor) -> Tensor:
    return torch.stack([torch.stack([a, b, tx], -1), torch.stack([c, d, ty], -1)], -2)


def zoom(x: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Scale by 2**alpha about the centre (alpha > 0 zooms in)."""
    s = torch.exp2(-alpha)
    zero = torch.zeros_like(alpha)
    return _affine(x, _theta(s, zero, zero, s, zero, zero))


def shift_x(x: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Move right by alpha times the width."""
    one, zero = torch.ones_like(alpha), torch.zeros_like(alpha)
    return _affine(x, _theta(one, zero, zero, one, -2 * alpha, zero))


def shift_y(x: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Move down by alpha times the height."""
    one, zero = torch.ones_like(alpha), torch.zeros_like(alpha)
    return _affine(x, _theta(one, zero, zero, one, zero, -2 * alpha))


def rotate(x: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate counter-clockwise by alpha radians about the centre (square images)."""
    cos, sin, zero = torch.cos(alpha), torch.sin(alpha), torch.zeros_like(alpha)
    return _affine(x, _theta(cos, -sin, sin, cos, zero, zero))


def brightness(x: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Add alpha to every pixel, clipped to [-1, 1] (what a tanh generator can reach); nothing undefined."""
    return (x + alpha.view(-1, *[1] * (x.dim() - 1))).clamp(-1, 1), torch.ones_like(x)


#: edit name -> (transform, default alpha_max in the edit's unit)
EDITS = {
    "zoom": (zoom, 1.0),            # log2 scale: x0.5 .. x2
    "shift_x": (shift_x, 0.25),     # a quarter of the width either way
    "shift_y": (shift_y, 0.25),
    "brightness": (brightness, 0.5),
    "rotate": (rotate, 0.5),        # radians, about 29 degrees
}


def check_edit(name: str) -> None:
    if name not in EDITS:
        raise ConfigError(f"unknown steer.edit '{name}'; choose one of {', '.join(EDITS)}")


def objective(G: nn.Module, z: Tensor, y: Tensor | None, alpha: Tensor, w: Tensor, edit: str) -> Tensor:
    """Eq. 1 on one batch: masked mean squared error between G(z + alpha w) and edit(G(z), alpha)."""
    with torch.no_grad():
        target, mask = EDITS[edit][0](G(z, y), alpha)
    err = (G(z + alpha[:, None] * w, y) - target) ** 2 * mask
    return err.sum() / mask.sum().clamp_min(1)


def learn(G: nn.Module, latent: Latent, edit: str, alpha_max: float, steps: int = 200, batch: int = 32,
          lr: float = 0.05, seed: int = 0) -> dict:
    """Learn w by Adam from w = 0, G frozen; alpha ~ U[-alpha_max, alpha_max] per sample.
    Returns w, the per-step training losses, and the loss at w = 0 and at w* on held-out latents."""
    check_edit(edit)
    G.requires_grad_(False)
    dev = latent.device
    g = torch.Generator().manual_seed(seed)

    def draw(n: int, g: torch.Generator):
        z, y = latent.z(n, g), latent.labels(n, g)
        return z, y, ((torch.rand(n, generator=g) * 2 - 1) * alpha_max).to(dev)

    w = torch.zeros(latent.dim, device=dev, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    losses = []
    for _ in range(steps):
        loss = objective(G, *draw(batch, g), w, edit)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())  # read once at the end: no host sync per step
    w = w.detach()
    held_out = draw(4 * batch, torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        loss_w0, loss_final = (objective(G, *held_out, v, edit).item() for v in (torch.zeros_like(w), w))
    return {"w": w.cpu(), "edit": edit, "alpha_max": float(alpha_max), "loss": loss_final, "loss_w0": loss_w0,
            "losses": torch.stack(losses).tolist(), "steps": steps, "batch": batch, "lr": lr}


def load_direction(path: str, z_dim: int) -> dict:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"steer.direction not found: {p}")
    try:
        d = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"cannot read steer.direction {p}: not a saved direction ({type(e).__name__})") from None
    if not isinstance(d, dict) or not {"w", "edit", "alpha_max"} <= d.keys() or not isinstance(d["w"], Tensor):
        raise ConfigError(f"{p} is not a steer direction (needs w, edit, alpha_max; written by mode=steer)")
    if d["edit"] not in EDITS:
        raise ConfigError(f"{p} holds an unknown edit '{d['edit']}'; directions are for {', '.join(EDITS)}")
    if tuple(d["w"].shape) != (z_dim,):
        raise ConfigError(f"steer.direction {p} has shape {tuple(d['w'].shape)}; this generator's latent is ({z_dim},)")
    return d


def _summary(d: dict) -> str:
    curve = d["losses"]
    k = max(1, len(curve) // 10)  # first and last tenth of training, averaged
    first, last = sum(curve[:k]) / k, sum(curve[-k:]) / k
    return (f"steer {d['edit']}: held-out loss {d['loss_w0']:.4f} at w=0 -> {d['loss']:.4f} learned "
            f"({d['loss'] / max(d['loss_w0'], 1e-12):.0%}); training loss {first:.4f} -> {last:.4f} "
            f"over {d['steps']} steps; |w| = {d['w'].norm():.2f}")


def walk(cfg: DictConfig, G: nn.Module, latent: Latent, state: dict, run_dir: Path) -> tuple[Tensor, int, str]:
    """The grid for mode=steer: a row per latent, columns z + alpha w for alpha from -max to +max.
    Learns w (saved to <run>/samples/steer_<edit>.pt) unless steer.direction names a saved one."""
    s = cfg.steer
    info = DataInfo.from_dict(state["data_info"])
    if not info.is_image:
        raise ConfigError(f"mode=steer edits images; this checkpoint generates {info.kind} "
                          f"({info.name or 'its dataset'}): use mode=grid")
    for ok, msg in [(s.cols >= 2, f"steer.cols must be >= 2, got {s.cols}"),
                    (s.rows >= 1, f"steer.rows must be >= 1, got {s.rows}"),
                    (s.alpha_max is None or s.alpha_max > 0, f"steer.alpha_max must be > 0, got {s.alpha_max}")]:
        if not ok:
            raise ConfigError(msg)
    if not s.direction:
        check_edit(s.edit)
    path = Path(s.direction).expanduser() if s.direction else run_dir / "samples" / f"steer_{s.edit}.pt"
    if cfg.out and Path(cfg.out).expanduser().resolve() == path.resolve():
        raise ConfigError(f"out={cfg.out} would overwrite the steer direction; choose another file")
    if s.direction:
        d = load_direction(s.direction, latent.dim)
        console.print(f"steer {d['edit']}: direction from {s.direction} (learned loss {d.get('loss', float('nan')):.4f})",
                      highlight=False)
    else:
        for ok, msg in [(s.steps >= 1, f"steer.steps must be >= 1, got {s.steps}"),
                        (s.batch >= 1, f"steer.batch must be >= 1, got {s.batch}"),
                        (s.lr > 0, f"steer.lr must be > 0, got {s.lr}")]:
            if not ok:
                raise ConfigError(msg)
        amax = s.alpha_max if s.alpha_max is not None else EDITS[s.edit][1]
        d = learn(G, latent, s.edit, amax, s.steps, s.batch, s.lr, cfg.seed)
        checkpoint.save(path, {**d, "ckpt": str(run_dir)})
        console.print(_summary(d), highlight=False)
        console.print(f"direction: {path} (reuse: steer.direction={path})", highlight=False)
    amax = s.alpha_max if s.alpha_max is not None else d["alpha_max"]
    alphas = torch.linspace(-amax, amax, s.cols, device=latent.device)
    z = latent.z(s.rows, torch.Generator().manual_seed(cfg.seed))
    w = d["w"].to(latent.device)
    return (z[:, None] + alphas[None, :, None] * w).flatten(0, 1), s.cols, f"steer_{d['edit']}"
