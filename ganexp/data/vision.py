"""Small torchvision datasets held on the device: read once through torchvision's own classes
(so the on-disk layout is exactly theirs), then kept as one uint8 (N, C, H, W) tensor.

- ``mnist``: LeCun et al. 1998, 60,000 train / 10,000 test 28x28 digits.
- ``fashion_mnist``: Xiao et al. 2017, the same format with clothing.
- ``cifar10``: Krizhevsky 2009, 50,000 train / 10,000 test 32x32 colour images, 10 classes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganexp.data.base import DataInfo, TensorData, binarizable
from ganexp.data.digits import resize_uint8
from ganexp.data.fetch import data_root, open_torchvision
from ganexp.errors import ConfigError

SPLITS = ("train", "test")


def _split(split: str, name: str) -> bool:
    if split not in SPLITS:
        raise ConfigError(f"dataset.split for {name} must be one of {list(SPLITS)}, got '{split}'")
    return split == "train"


def load_idx(cls_name: str, name: str, root: str | Path, download: bool, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """An MNIST-format set (``root/<cls_name>/raw/*-idx?-ubyte``) as uint8 (N, 1, 28, 28) and labels."""
    import torchvision.datasets as tvd

    root = data_root(root)
    ds = open_torchvision(getattr(tvd, cls_name), name, root, root / cls_name / "raw", download, train=_split(split, name))
    return ds.data.unsqueeze(1).contiguous(), ds.targets.long()


def _idx_set(cls_name: str, name: str, root, download, split, resolution) -> TensorData:
    x, y = load_idx(cls_name, name, root, download, split)
    return TensorData(resize_uint8(x, resolution), y, DataInfo("image", (1, resolution, resolution), 10, name))


@binarizable
def mnist(root: str = "~/.cache/ganexp/data", download: bool = False, split: str = "train", resolution: int = 28,
          name: str = "mnist") -> TensorData:
    """MNIST through torchvision: files under ``root/MNIST/raw``."""
    return _idx_set("MNIST", name, root, download, split, resolution)


@binarizable
def fashion_mnist(root: str = "~/.cache/ganexp/data", download: bool = False, split: str = "train",
                  resolution: int = 28, name: str = "fashion_mnist") -> TensorData:
    """Fashion-MNIST through torchvision: files under ``root/FashionMNIST/raw``."""
    return _idx_set("FashionMNIST", name, root, download, split, resolution)


@binarizable
def cifar10(root: str = "~/.cache/ganexp/data", download: bool = False, split: str = "train", resolution: int = 32,
            name: str = "cifar10") -> TensorData:
    """CIFAR-10 through torchvision: python batches under ``root/cifar-10-batches-py`` (md5-checked)."""
    from torchvision.datasets import CIFAR10

    root = data_root(root)
    ds = open_torchvision(CIFAR10, name, root, root / CIFAR10.base_folder, download, train=_split(split, name))
    x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # torchvision keeps NHWC
    y = torch.tensor(ds.targets, dtype=torch.int64)
    return TensorData(resize_uint8(x, resolution), y, DataInfo("image", (3, resolution, resolution), 10, name))
