"""Large image sets streamed through a DataLoader (workers decode JPEGs while the step runs).

- ``celeba``: Liu et al. 2015, 202,599 aligned 178x218 faces with 40 binary attributes (DCGAN, PGGAN, ...).
- ``lsun``: Yu et al. 2015, one LSUN scene category (bedroom for DCGAN) stored as LMDB.

Images are resized (shorter side) and center-cropped to ``resolution`` in the workers and
travel as uint8, 4x fewer bytes than float; ``LoaderData`` maps them to [-1, 1] on the device.
"""
from __future__ import annotations

import importlib.util

from torchvision import transforms

from ganexp.data.base import DataInfo, LoaderData, binarizable
from ganexp.data.fetch import data_root, open_torchvision
from ganexp.errors import ConfigError, DataError


class ConvertMode:
    """PIL ``convert`` as a picklable transform (workers may be spawned, and lambdas do not pickle)."""

    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, img):
        return img if img.mode == self.mode else img.convert(self.mode)


def image_transform(resolution: int, channels: int = 3, crop: int | None = None) -> transforms.Compose:
    """PIL image -> uint8 (channels, resolution, resolution): optional center crop of ``crop`` pixels
    first (e.g. CelebA faces), then resize of the shorter side and a center crop to a square."""
    if channels not in (1, 3):
        raise ConfigError(f"dataset.channels must be 1 or 3, got {channels}")
    steps = [ConvertMode("L" if channels == 1 else "RGB")]
    steps += [transforms.CenterCrop(crop)] if crop else []
    steps += [transforms.Resize(resolution, antialias=True), transforms.CenterCrop(resolution), transforms.PILToTensor()]
    return transforms.Compose(steps)


class PickAttribute:
    """CelebA target: one attribute as a class index (0/1), or 0 when unlabelled (the collate needs a value)."""

    def __init__(self, index: int | None):
        self.index = index

    def __call__(self, attr):
        return 0 if self.index is None else int(attr[self.index])


@binarizable
def celeba(root: str = "~/.cache/ganexp/data", download: bool = False, split: str = "all", resolution: int = 64,
           crop: int | None = None, attribute: str | None = None, num_workers: int | None = None, name: str = "celeba") -> LoaderData:
    """CelebA through torchvision: ``root/celeba/img_align_celeba/*.jpg`` and its ``list_*.txt`` files.
    ``attribute`` (e.g. Male, Smiling) makes a 2-class label for conditional models."""
    from torchvision.datasets import CelebA

    if split not in ("all", "train", "valid", "test"):
        raise ConfigError(f"dataset.split for {name} must be one of all, train, valid, test; got '{split}'")
    root = data_root(root)
    ds = open_torchvision(CelebA, name, root, root / CelebA.base_folder, download, split=split,
                          transform=image_transform(resolution, 3, crop))
    index = None
    if attribute is not None:
        if attribute not in ds.attr_names:
            raise ConfigError(f"dataset.attribute '{attribute}' is not a CelebA attribute; choose one of {ds.attr_names}")
        index = ds.attr_names.index(attribute)
    ds.target_transform = PickAttribute(index)
    return LoaderData(ds, DataInfo("image", (3, resolution, resolution), 2 if index is not None else 0, name), num_workers)


LSUN_CATEGORIES = ("bedroom", "bridge", "church_outdoor", "classroom", "conference_room", "dining_room",
                   "kitchen", "living_room", "restaurant", "tower")


@binarizable
def lsun(root: str = "~/.cache/ganexp/data", category: str | list[str] = "bedroom", split: str = "train",
         resolution: int = 64, num_workers: int | None = None, name: str = "lsun") -> LoaderData:
    """LSUN through torchvision: one LMDB folder ``root/<category>_<split>_lmdb`` per category; several
    categories become class labels. torchvision cannot download LSUN (see docs/datasets.md)."""
    from torchvision.datasets import LSUN

    cats = [category] if isinstance(category, str) else list(category)
    bad = [c for c in cats if c not in LSUN_CATEGORIES] + ([split] if split not in ("train", "val") else [])
    if bad:
        raise ConfigError(f"unknown LSUN category or split {bad}; categories: {list(LSUN_CATEGORIES)}, splits: train, val")
    root = data_root(root)
    if importlib.util.find_spec("lmdb") is None:
        raise DataError(f"{name} is stored as LMDB and needs the package lmdb: pip install lmdb")
    for c in cats:
        where = root / f"{c}_{split}_lmdb"
        if not (where / "data.mdb").is_file():
            raise DataError(f"{name}: no LMDB database at {where}/data.mdb; download {c}_{split}_lmdb.zip with the LSUN "
                            f"script (github.com/fyu/lsun) and unzip it there, or point dataset.root=PATH at a copy")
    ds = open_torchvision(LSUN, name, root, root, None, classes=[f"{c}_{split}" for c in cats],
                          transform=image_transform(resolution, 3))
    return LoaderData(ds, DataInfo("image", (3, resolution, resolution), len(cats) if len(cats) > 1 else 0, name), num_workers)
