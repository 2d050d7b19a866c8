"""Checkpoints: plain dicts of state dicts, written atomically, read with weights_only=True."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ganexp.rundir import files
from ganexp.errors import CheckpointError

REQUIRED = ("G", "D", "step", "config", "data_info")


def save(path: Path, state: dict[str, Any]) -> None:
    """Serialise in memory, then write atomically (files.atomic_write): a crash or a full disk never
    leaves half a file, and the previous checkpoint stays as it was. A full disk is one line
    (files.DiskFull) naming the path and the space needed."""
    files.torch_save(path, state)


def resolve(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder (then its ``ckpt/last.pt``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "ckpt" / "last.pt"
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p} (give a .pt file or a run folder with ckpt/last.pt)")
    return p


def load(path: str | os.PathLike) -> dict[str, Any]:
    p = resolve(path)
    try:
        with warnings.catch_warnings():  # a damaged file makes torch warn (pickle protocol) before it raises
            warnings.simplefilter("ignore")
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise CheckpointError(f"cannot read checkpoint {p}: corrupt or not a ganexp checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED):
        raise CheckpointError(f"{p} is not a ganexp checkpoint (missing {[k for k in REQUIRED if k not in state] if isinstance(state, dict) else 'everything'})")
    return state


def rng_state(device: torch.device) -> dict[str, Any]:
    """The CPU generator, and on CUDA the run's own device generator only (as a one-element list
    under "cuda"): a CPU run touches no GPU (no CUDA context), and a host with fewer GPUs restores it."""
    s = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        s["cuda"] = [torch.cuda.get_rng_state(device)]
    return s


def cuda_state(s: dict[str, Any], index: int) -> torch.Tensor | None:
    """The saved CUDA generator state for device ``index``: the one saved (this format), or the
    index's own of the every-GPU list older checkpoints hold (the last one when it has fewer)."""
    states = s.get("cuda") or []
    return states[min(index, len(states) - 1)] if len(states) else None


def set_rng_state(s: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(s["torch"])
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        state = cuda_state(s, index)
        if state is not None:
            torch.cuda.set_rng_state(state, device)
