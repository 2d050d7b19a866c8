"""The real data a metric compares against: a fixed-order stream of real samples and the
fingerprint that identifies a dataset in the caches (classifier weights, reference statistics)."""
from __future__ import annotations

import hashlib
import json
from typing import Iterator

import torch
from torch import Tensor

from ganexp.data.base import to_unit_range


def dataset_fingerprint(data) -> str:
    """What identifies a dataset: its info, its size and (held in memory) a strided slice of its values."""
    h = hashlib.sha256(json.dumps(data.info.as_dict(), sort_keys=True).encode())
    h.update(str(len(data)).encode())
    if hasattr(data, "x"):
        idx = torch.linspace(0, len(data.x) - 1, min(len(data.x), 512)).long().to(data.x.device)
        h.update(data.x[idx].contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def real(data, n: int, batch_size: int, offset: int = 0) -> Iterator[Tensor]:
    """``n`` real samples from ``offset`` of a fixed shuffle (files are often sorted by class);
    streamed datasets give fresh random batches."""
    if hasattr(data, "x"):
        order = torch.randperm(len(data.x), generator=torch.Generator().manual_seed(0))[offset:offset + n]
        for i in range(0, len(order), batch_size):
            x = data.x[order[i:i + batch_size].to(data.x.device)]
            yield to_unit_range(x) if x.dtype == torch.uint8 else x
    else:
        for x, _ in data.real_batches(n, batch_size):
            yield x
