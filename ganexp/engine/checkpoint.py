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


def rng_state() -> dict[str, Any]:
    s = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
