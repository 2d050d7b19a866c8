"""Where a run came from: the command, the code (git commit and dirty flag), the package versions,
the device and the host, so a row of a results table can be traced back and re-run."""
from __future__ import annotations

import platform
import shlex
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("ganexp", "torch", "torchvision", "hydra-core", "omegaconf", "torchmetrics", "tensorboard")


def _git(*args: str, cwd: Path) -> str | None:
    try:
        r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def git_state(path: Path) -> dict[str, Any] | None:
    """The commit of the git work tree holding ``path`` and whether it has uncommitted changes."""
    commit = _git("rev-parse", "HEAD", cwd=path)
    if commit is None:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=path)
    return {"commit": commit, "dirty": bool(status), "root": _git("rev-parse", "--show-toplevel", cwd=path)}


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def collect(device: torch.device, argv: list[str] | None = None) -> dict[str, Any]:
    """This process's provenance record."""
    import ganexp

    argv = sys.argv if argv is None else argv
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([argv[0], *(shlex.quote(a) for a in argv[1:])]),
        "cwd": str(Path.cwd()),
        "git": git_state(Path(ganexp.__file__).resolve().parent),
        "versions": versions(),
        "python": platform.python_version(),
        "device": {"type": device.type, "name": device_name(device), "threads": torch.get_num_threads()},
        "host": socket.gethostname(),
    }
