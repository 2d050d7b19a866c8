"""Data-parallel training with torch.distributed: one run over several processes (torchrun, or
Slurm tasks started by Hydra's submitit launcher), DistributedDataParallel on G and D.

``setup`` reads who this process is from the launcher's environment and joins the process group
(NCCL on CUDA, gloo on CPU); without a launcher (or with one process) it returns None and nothing
here is used, so a single-process run is exactly what it was. The ``Dist`` object the Run carries:

- the shared random stream: every rank draws the GLOBAL batch's data indices and latents from one
  generator seeded identically on all ranks and keeps its own slice, so the union of the ranks'
  batches is the single-process batch (and the stream goes on the same for any number of ranks);
  per-sample noise (penalties, augmentation, label noise) comes from each rank's own global RNG;
- a small gloo group for control messages (stop requests, logged values, the run folder), so they
  never wait for the GPU;
- SIGINT/SIGTERM handling: a signal on any rank stops every rank at the same step boundary.
"""
from __future__ import annotations

import datetime
import os
import signal
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as tdist
from torch import Tensor, nn

from ganexp.errors import ConfigError, GanexpError

#: How long a rank waits in a collective (e.g. while rank 0 evaluates alone) before giving up.
TIMEOUT = datetime.timedelta(minutes=60)


class RunInterrupted(GanexpError):
    """Ctrl-C or SIGTERM ended the run; rank 0 saved the checkpoint (the message says where)."""


class FollowsRank0(GanexpError):
    """Rank 0 refused the run and said why; the other ranks end with it quietly."""


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


def _slurm_rendezvous() -> None:
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


def _device(name: str, local_rank: int) -> torch.device:
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


def _default_generator(device: torch.device) -> torch.Generator:
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of a rank's own RNG (per-sample noise): distinct per rank and per resume step."""
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729 + 1) % (2**63)


@dataclass
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    ctrl: Any = None  # the gloo group for control messages
    shared: torch.Generator | None = None
    signalled: bool = False
    _work: Any = None
    _flag: Tensor | None = None
    _handlers: dict = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---------------------------------------------------------------- the batch split
    def local_batch(self, batch_size: int) -> int:
        if batch_size % self.world:
            raise ConfigError(f"train.batch_size={batch_size} is the global batch and must be divisible by the "
                              f"{self.world} ranks; use a multiple of {self.world}")
        return batch_size // self.world

    def start_streams(self, seed: int) -> None:
        """After the run is built (identically on every rank): the shared stream continues from the
        global RNG's state, as a single process would draw; the global RNG becomes this rank's own."""
        self.shared = torch.Generator(device=self.device)
        self.shared.set_state(_default_generator(self.device).get_state())
        torch.manual_seed(rank_seed(seed, self.rank))

    def slice(self, t: Tensor | None, n: int) -> Tensor | None:
        return None if t is None else t[self.rank * n:(self.rank + 1) * n]

    def indices(self, size: int, n: int, device: torch.device) -> Tensor:
        """This rank's ``n`` of the global batch's random indices into ``size`` samples."""
        return self.slice(torch.randint(size, (n * self.world,), device=device, generator=self.shared), n)

    def latent(self, latent, n: int) -> tuple[Tensor, Tensor | None]:
        """This rank's ``n`` latents (and labels) of the global batch's draw."""
        z = latent.z(n * self.world, self.shared)
        return self.slice(z, n), self.slice(latent.labels(n * self.world, self.shared), n)

    # ---------------------------------------------------------------- RNG in checkpoints
    def rng_state(self) -> dict[str, Any]:
        return {"shared": {"device": self.device.type, "state": self.shared.get_state()}}

    def set_rng_state(self, rng: dict[str, Any], seed: int, step: int) -> None:
        """Restores the shared stream (from a distributed checkpoint, or a single-process one's
        global RNG of this device type); each rank's own RNG is reseeded from (seed, rank, step)."""
        saved = rng.get("shared")
        if saved is not None and saved["device"] == self.device.type:
            self.shared.set_state(saved["state"])
        elif saved is None and self.device.type == "cpu":
            self.shared.set_state(rng["torch"])
        elif saved is None and rng.get("cuda"):
            states = rng["cuda"]
            self.shared.set_state(states[min(self.device.index or 0, len(states) - 1)])
        torch.manual_seed(rank_seed(seed, self.rank, step))

    # ---------------------------------------------------------------- models
    def wrap(self, m: nn.Module) -> nn.Module:
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(m, device_ids=ids)

    # ---------------------------------------------------------------- control messages
    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        tdist.broadcast_object_list(box, src=0, group=self.ctrl)
        return box[0]

    def average(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of logged values (every rank then takes the same decisions, e.g. divergence)."""
        t = torch.tensor(list(values.values()), dtype=torch.float64)
        tdist.all_reduce(t, group=self.ctrl)
        return dict(zip(values, (t / self.world).tolist()))

    def catch_signals(self) -> None:
        """SIGINT and SIGTERM set a flag instead of interrupting: the ranks agree on a step to stop at."""
        def on_signal(signum, frame):
            self.signalled = True

        for s in (signal.SIGINT, signal.SIGTERM):
            self._handlers[s] = signal.signal(s, on_signal)

    def release_signals(self) -> None:
        for s, h in self._handlers.items():
            signal.signal(s, h)
        self._handlers.clear()

    def should_stop(self) -> bool:
        """Called once per step by every rank: True on all ranks at the same step once any rank was
        signalled. The flag's all-reduce runs in the background for one step (CPU, gloo), so the
        step never waits for it."""
        stop = False
        if self._work is not None:
            self._work.wait()
            stop = bool(self._flag[0])
        self._flag = torch.tensor([int(self.signalled)], dtype=torch.int32)
        self._work = tdist.all_reduce(self._flag, op=tdist.ReduceOp.MAX, group=self.ctrl, async_op=True)
        return stop

    def barrier(self) -> None:
        """Every rank waits here (rank 0 has written the run's last files before the others exit)."""
        if self._work is not None:
            self._work.wait()
            self._work = None
        tdist.barrier(group=self.ctrl)

    def close(self) -> None:
        self.release_signals()
        if tdist.is_initialized():
            tdist.destroy_process_group()


def setup(device_name: str) -> Dist | None:
    """Join the process group the launcher described (None for one process)."""
    env = launch_env()
    if env is None:
        return None
    rank_, world, local = env
    device = _device(device_name, local)
    if "RANK" not in os.environ:
        _slurm_rendezvous()
    if not tdist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            tdist.init_process_group(backend, rank=rank_, world_size=world, timeout=TIMEOUT,
                                     **({"device_id": device} if device.type == "cuda" else {}))
        except (RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GanexpError(f"cannot join the process group (rank {rank_} of {world}): {first}") from None
    ctrl = tdist.new_group(backend="gloo", timeout=TIMEOUT) if tdist.get_backend() != "gloo" else None
    return Dist(rank_, world, local, device, ctrl)


def continue_shared_stream(rng: dict[str, Any], device: torch.device) -> None:
    """One process resuming a distributed run's checkpoint: its global RNG (which draws data
    indices and latents on one process) continues the distributed run's shared stream."""
    saved = rng.get("shared")
    if saved is not None and saved["device"] == device.type:
        _default_generator(device).set_state(saved["state"])


def convert_sync_bn(m: nn.Module) -> nn.Module:
    return nn.SyncBatchNorm.convert_sync_batchnorm(m)
