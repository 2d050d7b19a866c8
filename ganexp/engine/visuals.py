"""What a run shows of its generator while it trains: the sample grid (a row per class when
conditional) or, for 2D data, the scatter plot over the real points and D's landscape."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ganexp.engine.run import Run
from ganexp.engine.sampler import Sampler


def d_landscape(D: nn.Module, lim: float, n: int = 80) -> tuple[Tensor, Tensor, Tensor] | None:
    """D's output on an n x n grid over [-lim, lim]^2 (2D data; eval mode, no autograd), or None
    for a conditional D, which has no single landscape."""
    if getattr(D, "num_classes", 0):
        return None
    device = next(D.parameters()).device
    xs = torch.linspace(-lim, lim, n, device=device)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    was = D.training
    D.eval()
    try:
        with torch.inference_mode():
            v = D(torch.stack([gx.flatten(), gy.flatten()], 1), None)
    finally:
        D.train(was)
    return gx, gy, v.view(n, n)


def show_samples(run: Run, sampler: Sampler, step: int) -> None:
    x = sampler(run.fixed_z, run.fixed_y)
    name = f"step_{step:07d}.png"
    if not run.info.is_image:
        real, _ = run.data.take(len(x)) if hasattr(run.data, "take") else run.data.sample(len(x))
        lim = float(real.abs().max()) * 1.3
        run.monitor.scatter("samples/scatter", x, real, lim, d_landscape(run.D, lim), step, run.out_dir / "samples" / name)
    else:
        x, nrow = grid_by_class(x, run.fixed_y)
        run.monitor.images("samples/grid", x, step, run.out_dir / "samples" / name, nrow)


def grid_by_class(x: Tensor, y: Tensor | None, most: int = 100) -> tuple[Tensor, int | None]:
    """What the sample grid shows: 64 images; with up to 16 classes, a row per class (the fixed labels
    cycle through the classes, so the first ``k * classes`` hold ``k`` of each), up to ``most`` images."""
    classes = 0 if y is None else int(y.max()) + 1
    per_class = min(len(x), most) // classes if 1 < classes <= 16 else 0
    if per_class == 0:
        return x[:64], None
    keep = per_class * classes
    order = torch.argsort(y[:keep], stable=True)
    return x[:keep][order], per_class
