"""Kernel-density plots of 2D samples (Gaussian KDE, Scott's bandwidth): generated beside real."""
from __future__ import annotations

import numpy as np
from torch import Tensor


def density(points: np.ndarray, grid: np.ndarray) -> np.ndarray:
    from scipy.stats import gaussian_kde

    try:
        return gaussian_kde(points.T)(grid)
    except (np.linalg.LinAlgError, ValueError):  # collapsed to a point or a line: no 2D density
        return np.zeros(grid.shape[1])


def kde_figure(fake: Tensor, real: Tensor, size: int = 100):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, r = fake.double().numpy(), real.double().numpy()
    lim = float(np.abs(r).max()) * 1.3
    xs = np.linspace(-lim, lim, size)
    gx, gy = np.meshgrid(xs, xs)
    grid = np.stack([gx.ravel(), gy.ravel()])
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), dpi=80)
    for ax, pts, title in ((axes[0], r, "real"), (axes[1], f, "generated")):
        ax.imshow(density(pts, grid).reshape(size, size), origin="lower", extent=(-lim, lim, -lim, lim), cmap="viridis")
        ax.set_title(f"{title} (KDE)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
