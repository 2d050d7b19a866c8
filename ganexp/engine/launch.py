"""Who this process is and where it runs: the launcher's environment (torchrun, or the tasks of
a Slurm step) and the device a run trains on. Readable before any process group exists."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ganexp.errors import ConfigError, GanexpError


def launch_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) from torchrun's RANK/WORLD_SIZE/LOCAL_RANK, or from the tasks
    of a Slurm step (srun, the submitit launcher: one task per GPU): SLURM_PROCID,
    SLURM_STEP_NUM_TASKS, SLURM_LOCALID. A batch script itself (no step) is one process, and
    GANEXP_SLURM_DDP=0 ignores Slurm's variables. None for one process."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    elif "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env and env.get("GANEXP_SLURM_DDP", "1") != "0":
        rank, world, local = int(env["SLURM_PROCID"]), int(env["SLURM_STEP_NUM_TASKS"]), int(env.get("SLURM_LOCALID", 0))
    else:
        return None
    return (rank, world, local) if world > 1 else None


def rank() -> int:
    """This process's rank (0 without a launcher); readable before any process group exists."""
    e = launch_env()
    return e[0] if e else 0


def slurm_rendezvous() -> None:
    """MASTER_ADDR/PORT for Slurm tasks that no torchrun started: the job's first host, a port from the job id."""
    env = os.environ
    if "MASTER_ADDR" not in env:
        nodes = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "localhost"
        try:
            import subprocess

            first = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True,
                                   check=True).stdout.split()[0]
        except Exception:  # noqa: BLE001  (no scontrol: a plain host name, or the first of a simple list)
            first = nodes.split(",")[0].split("[")[0]
        env["MASTER_ADDR"] = first
    env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))


if TYPE_CHECKING:  # the command line reads launch_env before any torch is loaded (`ganexp train --cfg job`)
    import torch


def device_for_rank(name: str, local_rank: int) -> torch.device:
    import torch

    if name == "cpu":
        return torch.device("cpu")
    if name not in ("auto", "cuda"):
        raise ConfigError(f"device={name} under a distributed launch: each rank uses cuda:LOCAL_RANK; "
                          f"use device=auto, cuda or cpu")
    if not torch.cuda.is_available():
        if name == "cuda":
            raise ConfigError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise GanexpError(f"local rank {local_rank} has no GPU (this node has {torch.cuda.device_count()}); "
                          f"start as many processes per node as GPUs (torchrun --nproc_per_node)")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def resolve_device(name: str) -> torch.device:
    """The device a one-process run (or ``sample``/``eval``) uses: ``auto`` is CUDA when there is one."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available; use device=cpu or device=auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= (n := torch.cuda.device_count()):
        raise ConfigError(f"device={name} but this machine has {n} CUDA device{'s' if n != 1 else ''} "
                          f"(cuda:0{f'..cuda:{n - 1}' if n > 1 else ''}); use one of them or device=cuda")
    return dev
