"""The run object: everything the engine needs, built by ``build_run`` from the config."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ganexp.data import DataInfo, LoaderData, TensorData
from ganexp.engine.distributed import Dist, Single
from ganexp.engine.lr_schedule import LRSchedule
from ganexp.hooks import Hook, SetupContext
from ganexp.losses import Loss
from ganexp.models.latent import Latent
from ganexp.rundir.monitor import Monitor


@dataclass
class Schedule:
    """Progress is counted in generator steps; every interval is in the same unit (0: never).
    The values come from the config (``train.*``, ``optimizer.d_steps``/``g_steps``, ``eval.every``)."""

    steps: int
    batch_size: int
    d_steps: int
    g_steps: int
    log_every: int
    sample_every: int
    ckpt_every: int
    eval_every: int
    #: Processes that share each batch (DDP); ``batch_size`` is the global batch.
    ranks: int = 1

    @property
    def local_batch(self) -> int:
        """The samples of a batch this process handles (``batch_size`` on one process)."""
        return self.batch_size // self.ranks


@dataclass
class Run:
    data: TensorData | LoaderData
    G: nn.Module
    D: nn.Module
    loss: Loss
    tricks: list[Hook]
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    latent: Latent
    schedule: Schedule
    fixed_z: Tensor
    fixed_y: Tensor | None
    out_dir: Path
    device: torch.device
    monitor: Monitor
    seed: int = 0
    #: The resolved config as plain data, stored in checkpoints so `sample`/`eval` can rebuild.
    config: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    evaluators: list[Any] = field(default_factory=list)
    #: (metric name, "min" or "max") that picks ckpt/best.pt, or None.
    best_metric: tuple[str, str] | None = None
    resume_state: dict[str, Any] | None = None
    #: Autocast dtype of the forward passes (torch.bfloat16) or None for full precision.
    amp: torch.dtype | None = None
    #: torch.compile G and D for the training step (penalties and sampling use the plain modules).
    compile: bool = False
    #: torch.compile's mode: default | reduce-overhead (CUDA graphs) | max-autotune.
    compile_mode: str = "default"
    #: One-line notes from building the run (kept launch values on resume, warnings), shown at the start.
    notes: list[str] = field(default_factory=list)
    #: Where this process came from (command, git commit, versions, device, host): provenance.json.
    provenance: dict[str, Any] = field(default_factory=dict)
    #: Sets both players' lr before each G step (None: the configured lr throughout).
    lr_schedule: LRSchedule | None = None
    #: Each player's gradient norm is clipped to this before its optimizer step (None: no clipping).
    clip_grad_norm: float | None = None
    #: Who trains: ``Single`` (one process) or, under torchrun/Slurm, ``Dist`` (this process's rank,
    #: the shared random stream, control messages).
    dist: Dist | Single | None = None

    def __post_init__(self) -> None:
        if self.dist is None:
            self.dist = Single(self.device)

    @property
    def info(self) -> DataInfo:
        return self.data.info

    def setup_context(self) -> SetupContext:
        """What the hooks may read of this run when it is built; notes they add join ``notes``."""
        s = self.schedule
        return SetupContext(self.G, self.D, self.opt_g, self.opt_d, self.loss, self.tricks, self.info, self.latent,
                            self.device, s.batch_size, s.ranks, s.d_steps, s.g_steps,
                            clip_grad_norm=self.clip_grad_norm, notes=self.notes)
