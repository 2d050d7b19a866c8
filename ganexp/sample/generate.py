"""`ganexp sample`: grids, latent interpolation, truncated samples, latent arithmetic, steering walks and
style-mixing grids."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torchvision.utils import save_image

from ganexp.engine import checkpoint
from ganexp.errors import ConfigError, whole_number
from ganexp.rundir.files import atomic_write, unwritable
from ganexp.rundir.monitor import image_grid, scatter_figure
from ganexp.sample.rebuild import load_generator
from ganexp.sample.mixing import is_style, mixing_grid, truncated
from ganexp.sample.steer import walk
from ganexp.sample.walks import interpolate, truncate

MODES = ("grid", "interp", "truncation", "arith", "steer", "mix")


def latents(cfg: DictConfig, latent, style: bool = False) -> tuple[torch.Tensor, int]:
    """The latent batch for a mode, and the grid's row length (a style G truncates in W, not in z)."""
    g = torch.Generator().manual_seed(cfg.seed)
    if cfg.mode == "grid" or (cfg.mode == "truncation" and style):
        return latent.z(cfg.n, g), max(1, int(cfg.n ** 0.5))
    if cfg.mode == "truncation":
        return truncate(latent.z(cfg.n, g), cfg.truncation, g), max(1, int(cfg.n ** 0.5))
    if cfg.mode == "interp":
        ends = latent.z(2 * cfg.n, g)
        rows = [interpolate(ends[2 * i], ends[2 * i + 1], cfg.steps, cfg.interp) for i in range(cfg.n)]
        return torch.cat(rows), cfg.steps
    if cfg.mode == "arith":
        if len(cfg.arith) != 3:
            raise ConfigError("arith needs three seeds a, b, c (arith=[0,1,2]) for a - b + c")
        a, b, c = (latent.z(1, torch.Generator().manual_seed(s)) for s in cfg.arith)
        return torch.cat([a, b, c, a - b + c]), 4
    raise ConfigError(f"unknown mode '{cfg.mode}'; choose one of {', '.join(MODES)}")


def sample(cfg: DictConfig) -> Path:
    whole_number(cfg.n, "n")
    if cfg.mode == "interp":
        whole_number(cfg.steps, "steps")
    run_dir = checkpoint.resolve(cfg.ckpt).parent.parent
    target = Path(cfg.out).expanduser() if cfg.out else run_dir / "samples" / f"{cfg.mode}.png"
    why = unwritable(target)  # before any work: a shared, read-only checkpoint is sampled with out=
    if why:
        raise ConfigError(f"cannot write {target}: {why}; give out=PATH (a .png, .npy or .pt file in a writable folder)")
    G, latent, state = load_generator(cfg.ckpt, cfg.device, cfg.ema)
    if cfg.label is not None and not latent.num_classes:
        raise ConfigError(f"label={cfg.label} needs a conditional generator; this checkpoint's is unconditional "
                          f"(trained without conditional=true): drop label=")
    if latent.num_classes and cfg.label is not None and not 0 <= cfg.label < latent.num_classes:
        raise ConfigError(f"label must be in 0..{latent.num_classes - 1}, got {cfg.label}")
    if cfg.out and Path(cfg.out).suffix.lower() not in (".png", ".npy", ".pt"):  # before any learning
        raise ConfigError(f"out must end in .png, .npy or .pt, got '{Path(cfg.out).name}'")
    name, style = cfg.mode, is_style(G)
    if cfg.mode == "mix" and not style:
        raise ConfigError("mode=mix mixes the styles of a style generator (model=stylegan2); this checkpoint's has none")
    if cfg.mode == "mix":
        g = torch.Generator().manual_seed(cfg.seed)
        z, nrow = latent.z(cfg.mix_rows + cfg.mix_cols, g), cfg.mix_cols + 1
    elif cfg.mode == "steer":  # learns a direction first (needs gradients: outside inference_mode)
        z, nrow, name = walk(cfg, G, latent, state, run_dir)
    else:
        z, nrow = latents(cfg, latent, style)
    # interp, arith and steer rows are one path each: one class per row, not one per image
    per_label = nrow if cfg.mode in ("interp", "arith", "steer") else 1
    z = z.to(latent.device)
    y = None
    if latent.num_classes:
        y = (torch.full((len(z),), cfg.label) if cfg.label is not None else torch.arange(len(z)) // per_label % latent.num_classes).to(latent.device)
    with torch.inference_mode():
        if cfg.mode == "mix":
            x, _ = mixing_grid(G, z[:cfg.mix_rows], z[cfg.mix_rows:], y, cfg.mix_layers, cfg.psi)
            x, y = x.cpu(), None if y is None else y[:1].expand(len(x)).cpu()
        else:
            def gen(zb, yb):
                return truncated(G, zb, yb, cfg.psi) if style and cfg.mode == "truncation" else G(zb, yb)

            x = torch.cat([gen(z[i:i + 256], None if y is None else y[i:i + 256]) for i in range(0, len(z), 256)]).cpu()

    out = Path(cfg.out).expanduser() if cfg.out else run_dir / "samples" / f"{name}.png"
    suffix = out.suffix.lower()
    if suffix == ".pt":
        write = lambda f: torch.save({"x": x, "y": None if y is None else y.cpu()}, f)  # noqa: E731
    elif suffix == ".npy":
        arr = x if x.dim() == 2 else ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
        write = lambda f: np.save(f, arr.numpy())  # noqa: E731
    elif x.dim() == 2:  # .png (the suffix was checked above)
        write = lambda f: scatter_figure(x).savefig(f, format="png")  # noqa: E731
    else:
        write = lambda f: save_image(image_grid(x, nrow), f, format="png")  # noqa: E731
    return atomic_write(out, write)  # whole or not at all; a full disk is one line
