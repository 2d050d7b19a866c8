"""Data-parallel training with torch.distributed: one run over several processes (torchrun, or
Slurm tasks started by Hydra's submitit launcher), DistributedDataParallel on G and D.

``setup`` reads who this process is from the launcher's environment (``launch``) and joins the
process group (NCCL on CUDA, gloo on CPU); without a launcher (or with one process) it returns
``Single``, the world of one process, whose methods do what one process does, so the loop has one
path and a single-process run is exactly what it was. The ``Dist`` object the Run carries:

- the shared random stream: every rank draws the GLOBAL batch's data indices and latents from one
  generator seeded identically on all ranks and keeps its own slice, so the union of the ranks'
  batches is the single-process batch (and the stream goes on the same for any number of ranks);
  per-sample noise (penalties, augmentation, label noise) comes from each rank's own global RNG;
- a small gloo group for control messages (stop requests, logged values, the run folder), so they
  never wait for the GPU;
- SIGINT/SIGTERM/SIGUSR1/SIGUSR2 handling (``signals``): a signal on any rank stops every rank at
  the same step boundary.
"""
from __future__ import annotations

import datetime
import functools
import os
import signal
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
from torch import Tensor, nn

from ganexp.engine.checkpoint import cuda_state
from ganexp.engine.launch import device_for_rank, launch_env, resolve_device, slurm_rendezvous
from ganexp.engine.signals import StopSignals
from ganexp.errors import ConfigError, GanexpError

#: How long a rank waits in a collective (e.g. while rank 0 evaluates alone) before giving up.
TIMEOUT = datetime.timedelta(minutes=60)


class RunInterrupted(GanexpError):
    """Ctrl-C, SIGTERM or Slurm's warning signal ended the run; rank 0 saved the checkpoint (the
    message says where). ``signum`` is the signal, ``previous`` the handler it had before ganexp's."""

    def __init__(self, message: str, signum: int = signal.SIGINT, previous: Any = None):
        super().__init__(message)
        self.signum, self.previous = signum, previous


class FollowsRank0(GanexpError):
    """Rank 0 refused the run and said why; the other ranks end with it quietly."""


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
    _work: Any = None
    _flag: Tensor | None = None
    _signals: StopSignals | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---------------------------------------------------------------- the batch split
    def local_batch(self, batch_size: int) -> int:
        if batch_size % self.world:
            raise ConfigError(f"train.batch_size={batch_size} is the global batch and must be divisible by the "
                              f"{self.world} ranks; use a multiple of {self.world}")
        return batch_size // self.world

    def shard(self, data, seed: int, start_step: int) -> None:
        """Each rank reads its share of the data from here on (``data.shard``)."""
        data.shard(self, seed, start_step)

    def latent_sampler(self, latent):
        """``n -> (z, y)``: this rank's share of each global batch of latents."""
        return functools.partial(self.latent, latent)

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
        elif saved is None and self.device.type == "cuda" and rng.get("cuda"):
            self.shared.set_state(cuda_state(rng, self.device.index or 0))
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
        """SIGINT, SIGTERM and Slurm's warning signals set a flag instead of interrupting: the ranks
        agree on a step to stop at."""
        self._signals = StopSignals(also=(signal.SIGINT,))
        self._signals.install()

    def release_signals(self) -> None:
        if self._signals is not None:
            self._signals.release()

    @property
    def stop_signal(self) -> tuple[int, Any]:
        """(the signal that stopped the run, the handler it had before): this rank's own, or SIGTERM
        when another rank was signalled."""
        got = self._signals.received if self._signals is not None else None
        s = got if got is not None else signal.SIGTERM
        return s, (self._signals.previous.get(s) if self._signals is not None else None)

    def should_stop(self) -> bool:
        """Called once per step by every rank: True on all ranks at the same step once any rank was
        signalled. The flag's all-reduce runs in the background for one step (CPU, gloo), so the
        step never waits for it."""
        stop = False
        if self._work is not None:
            self._work.wait()
            stop = bool(self._flag[0])
        signalled = self._signals is not None and self._signals.received is not None
        self._flag = torch.tensor([int(signalled)], dtype=torch.int32)
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


class Single:
    """The world of one process: the same interface as ``Dist``, doing what one process does
    (its global RNG draws data and latents, nothing to wrap, average or wait for), so the loop
    has no branch for it."""

    rank, world, local_rank, is_main = 0, 1, 0, True

    def __init__(self, device: torch.device):
        self.device = device
        self._signals: StopSignals | None = None

    def local_batch(self, batch_size: int) -> int:
        return batch_size

    def shard(self, data, seed: int, start_step: int) -> None:
        pass

    def start_streams(self, seed: int) -> None:
        pass

    def latent_sampler(self, latent):
        return latent.sample

    def rng_state(self) -> dict[str, Any]:
        return {}

    def set_rng_state(self, rng: dict[str, Any], seed: int, step: int) -> None:
        continue_shared_stream(rng, self.device)  # a distributed run's checkpoint: its stream goes on here

    def wrap(self, m: nn.Module) -> nn.Module:
        return m

    def broadcast(self, obj: Any) -> Any:
        return obj

    def average(self, values: dict[str, float]) -> dict[str, float]:
        return values

    def catch_signals(self) -> None:
        """SIGTERM and Slurm's warning signals stop the run at the next step boundary (Ctrl-C
        interrupts at once, as KeyboardInterrupt)."""
        self._signals = StopSignals()
        self._signals.install()

    def release_signals(self) -> None:
        if self._signals is not None:
            self._signals.release()

    def should_stop(self) -> bool:
        return self._signals is not None and self._signals.received is not None

    @property
    def stop_signal(self) -> tuple[int, Any]:
        """(the signal that stopped the run, the handler it had before); SIGINT for Ctrl-C."""
        got = self._signals.received if self._signals is not None else None
        s = got if got is not None else signal.SIGINT
        return s, (self._signals.previous.get(s) if self._signals is not None else None)

    def barrier(self) -> None:
        pass

    def close(self) -> None:
        pass


def setup(device_name: str) -> Dist | Single:
    """Join the process group the launcher described; ``Single`` for one process."""
    env = launch_env()
    if env is None:
        return Single(resolve_device(device_name))
    rank_, world, local = env
    device = device_for_rank(device_name, local)
    if "RANK" not in os.environ:
        slurm_rendezvous()
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
