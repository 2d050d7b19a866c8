"""The two shapes a dataset takes in the engine: tensors held on the device, or a stream."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset


@dataclass(frozen=True)
class DataInfo:
    """What the models must fit. ``kind`` is "image" (C, H, W) or "points" (dim,)."""

    kind: str
    shape: tuple[int, ...]
    num_classes: int = 0
    name: str = ""
    binary: bool = False  # pixels thresholded to {-1, 1} (dataset.binarize=true)

    @property
    def is_image(self) -> bool:
        """True for images (C, H, W), False for points (dim,): the one test of what kind the data is."""
        return self.kind == "image"

    @property
    def channels(self) -> int:
        return self.shape[0] if self.is_image else 0

    @property
    def resolution(self) -> int:
        return self.shape[-1] if self.is_image else 0

    def as_dict(self) -> dict:
        d = {"kind": self.kind, "shape": list(self.shape), "num_classes": self.num_classes, "name": self.name}
        # only when set, so the fingerprints (metric caches) of continuous data stay as they were
        return (d | {"binary": True}) if self.binary else d

    @classmethod
    def from_dict(cls, d: dict) -> "DataInfo":
        return cls(d["kind"], tuple(d["shape"]), d.get("num_classes", 0), d.get("name", ""), d.get("binary", False))


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the generator ends in tanh)."""
    return x.float().div_(127.5).sub_(1.0)


def binarize_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels thresholded at mid-grey to 0 or 255, i.e. -1 or 1 after ``to_unit_range``."""
    return (x >= 128).to(torch.uint8).mul_(255)


def _binary_info(info: DataInfo) -> DataInfo:
    if not info.is_image:
        from ganexp.errors import ConfigError

        raise ConfigError(f"dataset.binarize=true needs an image dataset; '{info.name}' is {info.kind}")
    return replace(info, binary=True)


def binarizable(factory: Callable) -> Callable:
    """Gives an image dataset factory the ``binarize`` option (``dataset.binarize=true``): pixels
    thresholded to {-1, 1}, the discrete data for ``generator.output=relaxed_bernoulli``."""

    @functools.wraps(factory)
    def make(*args, binarize: bool = False, **kwargs):
        data = factory(*args, **kwargs)
        return data.binarize() if binarize else data

    return make


def subset_size(amount: float | int, total: int, name: str) -> int:
    """``dataset.subset``: a fraction in (0, 1) or a count of samples, checked against the dataset's size."""
    from ganexp.errors import ConfigError

    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ConfigError(f"dataset.subset={amount!r}: give a fraction in (0, 1) (0.1) or a count of samples (500)")
    n = round(amount * total) if 0 < amount < 1 else amount
    if amount <= 0 or n != int(n) or not 1 <= n <= total:
        raise ConfigError(f"dataset.subset={amount}: dataset '{name}' has {total} samples; give a fraction in (0, 1) "
                          f"or a whole count from 1 to {total}")
    return int(n)


def subset_indices(n: int, total: int, labels: torch.Tensor | None, seed: int = 0) -> torch.Tensor:
    """``n`` indices from a permutation fixed by ``seed`` (not the run's seed: every run of a study
    trains on the same subset). With labels the classes keep their shares: the permutation is
    interleaved by each sample's rank within its class, so any prefix is stratified."""
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    if labels is not None:
        y = labels.cpu()[perm]
        counts = torch.bincount(y)
        rank = torch.nn.functional.one_hot(y).cumsum(0).gather(1, y[:, None]).squeeze(1) - 1
        perm = perm[torch.argsort((rank + 0.5) / counts[y], stable=True)]
    return perm[:n].sort().values


class TensorData:
    """A small dataset held as one tensor on the training device and sampled there.

    Images are kept as uint8 (4x less memory) and converted per batch; points as float.
    Sampling is with replacement, so progress is counted in steps, not epochs.
    """

    dist = None
    full = None  # after ``subset``: the whole dataset, which the metrics compare against

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, info: DataInfo):
        if len(x) == 0:
            from ganexp.errors import DataError

            raise DataError(f"dataset '{info.name}' is empty")
        self.x, self.y, self.info = x, y, info

    def shard(self, dist, seed: int = 0, start_step: int = 0) -> "TensorData":
        """Under DDP: ``sample(n)`` returns this rank's ``n`` of the ``n * ranks`` random indices the
        shared stream draws, so the ranks' batches are disjoint draws and their union is one global batch."""
        self.dist = dist
        return self

    def binarize(self) -> "TensorData":
        """Threshold the stored pixels once, so every reader (training, metrics, caches) sees binary data."""
        self.info = _binary_info(self.info)
        self.x = binarize_uint8(self.x) if self.x.dtype == torch.uint8 else torch.where(self.x > 0, 1.0, -1.0)
        return self

    def subset(self, amount: float | int, seed: int = 0) -> "TensorData":
        """Train on part of the data (``dataset.subset``): a stratified subset fixed by ``seed``;
        ``full`` keeps the whole set as the metrics' reference (as Zhao et al. 2020 score 10% runs)."""
        idx = subset_indices(subset_size(amount, len(self), self.info.name), len(self), self.y, seed)
        part = TensorData(self.x[idx.to(self.x.device)], None if self.y is None else self.y[idx.to(self.y.device)],
                          self.info)
        part.full = self
        return part

    def to(self, device: torch.device) -> "TensorData":
        self.x = self.x.to(device)
        self.y = None if self.y is None else self.y.to(device)
        if self.full is not None:
            self.full.to(device)
        return self

    def __len__(self) -> int:
        return len(self.x)

    def _convert(self, x: torch.Tensor) -> torch.Tensor:
        return to_unit_range(x) if x.dtype == torch.uint8 else x

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.dist is None:
            idx = torch.randint(len(self.x), (n,), device=self.x.device)
        else:
            idx = self.dist.indices(len(self.x), n, self.x.device)
        return self._convert(self.x[idx]), None if self.y is None else self.y[idx]

    def real_batches(self, n: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """The first ``n`` samples in order, batched (deterministic: for metric statistics)."""
        n = min(n, len(self.x))
        for i in range(0, n, batch_size):
            yield self.take(min(batch_size, n - i), i)

    def take(self, n: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A deterministic slice (for evaluation statistics)."""
        sl = slice(offset, offset + n)
        return self._convert(self.x[sl]), None if self.y is None else self.y[sl]


class LoaderData:
    """A large dataset streamed through a DataLoader (workers, pinned memory), endlessly."""

    full = None  # after ``subset``: the whole dataset, which the metrics compare against

    def __init__(self, dataset: Dataset, info: DataInfo, num_workers: int | None = None):
        if len(dataset) == 0:
            from ganexp.errors import DataError

            raise DataError(f"dataset '{info.name}' is empty")
        self.dataset, self.info, self.num_workers = dataset, info, default_workers(num_workers)
        self.device = torch.device("cpu")
        self._it: Iterator | None = None
        self._batch = 0
        self.sampler = None  # a DistributedSampler under DDP (``shard``)

    def shard(self, dist, seed: int = 0, start_step: int = 0) -> "LoaderData":
        """Under DDP: each rank streams its own part of every pass (DistributedSampler, reshuffled per
        pass by ``set_epoch``; a resumed run starts at a pass numbered by its step, not from pass 0)."""
        from torch.utils.data.distributed import DistributedSampler

        self.sampler = DistributedSampler(self.dataset, num_replicas=dist.world, rank=dist.rank, shuffle=True,
                                          seed=seed, drop_last=True)
        self.sampler.set_epoch(start_step)
        self.close()
        return self

    def binarize(self) -> "LoaderData":
        """Threshold each streamed batch (see ``TensorData.binarize``)."""
        self.info = _binary_info(self.info)
        return self

    def subset(self, amount: float | int, seed: int = 0) -> "LoaderData":
        """Stream a random subset fixed by ``seed`` (labels are not read ahead, so it is not stratified);
        ``full`` keeps the whole set as the metrics' reference."""
        from torch.utils.data import Subset

        idx = subset_indices(subset_size(amount, len(self), self.info.name), len(self), None, seed)
        part = LoaderData(Subset(self.dataset, idx.tolist()), self.info, self.num_workers)
        part.full = self
        return part

    def to(self, device: torch.device) -> "LoaderData":
        self.device = device
        if self.full is not None:
            self.full.to(device)
        return self

    def __len__(self) -> int:
        return len(self.dataset)

    def _loader(self, n: int) -> DataLoader:
        return DataLoader(
            self.dataset, batch_size=n, shuffle=self.sampler is None, sampler=self.sampler, drop_last=True, num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=self.num_workers > 0,
        )

    def close(self) -> None:
        """Stop the worker processes now."""
        if self._it is not None:
            self._it.close()
            self._it = None

    def real_batches(self, n: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """``n`` samples streamed in batches (for metric statistics). Draws with the training batch
        size when a stream is already open, so evaluation does not restart the worker pool."""
        batch_size = self._batch or min(batch_size, len(self.dataset))
        done = 0
        while done < n:
            x, y = self.sample(batch_size)
            k = min(batch_size, n - done)
            yield x[:k], None if y is None else y[:k]
            done += k

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if n > len(self.dataset):  # the loader drops the incomplete batch: it would never yield one
            from ganexp.errors import DataError

            raise DataError(f"dataset '{self.info.name}' has {len(self.dataset)} samples, fewer than a batch of {n}; "
                            f"lower train.batch_size to {len(self.dataset)} or less, or add data")
        if self._it is None or n != self._batch:
            self.close()
            self._it, self._batch = _forever(self._loader(n)), n
        x, y = next(self._it)
        x = x.to(self.device, non_blocking=True)
        if self.info.binary:
            x = binarize_uint8(x) if x.dtype == torch.uint8 else torch.where(x > 0, 1.0, -1.0)
        x = to_unit_range(x) if x.dtype == torch.uint8 else x
        y = y.to(self.device, non_blocking=True) if self.info.num_classes else None
        return x, y


def default_workers(num_workers: int | None) -> int:
    """DataLoader worker processes: as asked, else min(4, the CPU cores this process may use)."""
    if num_workers is not None:
        return max(0, int(num_workers))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(4, cores)


def _forever(loader: DataLoader) -> Iterator:
    """Endless batches. A free function, not a method: a generator holding ``self`` would make a
    reference cycle, and workers shut down by the cycle collector stall ~5 s each in join()."""
    epoch = getattr(loader.sampler, "epoch", None)  # a DistributedSampler: a new shuffle each pass
    while True:
        empty = True
        if epoch is not None:
            loader.sampler.set_epoch(epoch)
            epoch += 1
        for batch in loader:
            empty = False
            yield batch
        if empty:  # a pass without one full batch would loop forever at 100% CPU
            from ganexp.errors import DataError

            raise DataError(f"the data loader yields no full batch of {loader.batch_size}; lower train.batch_size")
