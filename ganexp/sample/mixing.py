"""Looking at a style generator's W space (Karras et al. 2019, StyleGAN, Sec. 3.1 and Fig. 3; Karras et al.
2020, StyleGAN2): truncation toward the tracked mean W, and the style-mixing grid."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ganexp.errors import ConfigError


def is_style(G: nn.Module) -> bool:
    """A generator with a W space: per-layer styles ``ws(z, y, psi)``, ``synthesis(ws)``, ``mapping.w_avg``."""
    return callable(getattr(G, "ws", None)) and callable(getattr(G, "synthesis", None))


def truncated(G: nn.Module, z: Tensor, y: Tensor | None, psi: float) -> Tensor:
    """Images at w' = w_avg + psi (w - w_avg): psi = 1 is G itself, psi = 0 the mean-W image."""
    if not 0 <= psi <= 1:
        raise ConfigError(f"psi must be in [0, 1] (0: the mean W, 1: no truncation), got {psi}")
    return G.synthesis(G.ws(z, y, psi))


def mixing_grid(G: nn.Module, z_rows: Tensor, z_cols: Tensor, y: Tensor | None, coarse: int | None,
                psi: float = 1.0) -> tuple[Tensor, int]:
    """A (rows + 1) x (cols + 1) grid: the top row the column latents' images, the left column the row
    latents', and cell (i, j) the first ``coarse`` styles (the low resolutions: pose, shape) of row i with
    the rest (colour, texture) of column j. The corner is blank. One label ``y[0]`` for all, if any."""
    n = G.num_ws
    coarse = n // 2 if coarse is None else coarse
    if not 1 <= coarse < n:
        raise ConfigError(f"mix_layers must be in 1..{n - 1} (this generator has {n} styles), got {coarse}")
    lab = (lambda k: y[:1].expand(k)) if y is not None else (lambda k: None)
    wr, wc = G.ws(z_rows, lab(len(z_rows)), psi), G.ws(z_cols, lab(len(z_cols)), psi)
    top, left = G.synthesis(wc), G.synthesis(wr)
    rows = [torch.cat([torch.full_like(top[:1], -1.0), top])]
    for i in range(len(z_rows)):
        mixed = torch.cat([wr[i:i + 1, :coarse].expand(len(z_cols), -1, -1), wc[:, coarse:]], dim=1)
        rows.append(torch.cat([left[i:i + 1], G.synthesis(mixed)]))
    return torch.cat(rows), len(z_cols) + 1
