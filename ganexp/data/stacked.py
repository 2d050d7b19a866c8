"""Stacked MNIST: three random digits as the three colour channels, 10^3 = 1,000 modes.

The mode-collapse benchmark of Metz et al. 2017 (unrolled GAN), Srivastava et al. 2017
(VEEGAN) and Lin et al. 2018 (PacGAN): a digit classifier on each channel tells which of
the 1,000 modes a generated image falls in (``metrics=[stacked_modes]``).
"""
from __future__ import annotations

import torch

from ganexp.data.base import DataInfo, TensorData, binarizable
from ganexp.errors import ConfigError

SOURCES = ("digits", "sklearn_digits", "mnist")


def digit_source(source: str, resolution: int, root: str, download: bool) -> TensorData:
    """Single-channel labelled digits at ``resolution`` from one of SOURCES."""
    if source == "digits":
        from ganexp.data.digits import digits

        return digits(resolution)
    if source == "sklearn_digits":
        from ganexp.data.digits import sklearn_digits

        return sklearn_digits(resolution)
    if source == "mnist":
        from ganexp.data.vision import mnist

        return mnist(root, download, "train", resolution)
    raise ConfigError(f"dataset.source must be one of {list(SOURCES)}, got '{source}'")


def stack(x: torch.Tensor, y: torch.Tensor, num_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, H, W) digits -> (num_samples, 3, H, W), channel c holding digit d_c, label 100 d_0 + 10 d_1 + d_2."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(x), (num_samples, 3), generator=g)
    return x[idx].squeeze(2), (y[idx] * torch.tensor([100, 10, 1])).sum(1)


@binarizable
def stacked_mnist(source: str = "digits", num_samples: int = 60_000, seed: int = 0, resolution: int = 28,
                  root: str = "~/.cache/ganexp/data", download: bool = False, name: str = "stacked_mnist") -> TensorData:
    """``num_samples`` stacked images (deterministic by ``seed``) from the digit ``source``; 1,000 classes."""
    if num_samples < 1:
        raise ConfigError(f"dataset.num_samples must be >= 1, got {num_samples}")
    src = digit_source(source, resolution, root, download)
    x, y = stack(src.x, src.y, num_samples, seed)
    return TensorData(x, y, DataInfo("image", (3, resolution, resolution), 1000, name))
