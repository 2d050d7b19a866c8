"""The run object: everything the engine needs, built by ``build_run`` from the config."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ganexp.data import DataInfo, LoaderData, TensorData
from ganexp.hooks import Hook
from ganexp.losses import Loss
from ganexp.lr_schedule import LRSchedule
from ganexp.monitor import Monitor
from ganexp.sampling import Latent

#: An evaluator takes a function that yields generated batches and the real data, and returns metrics.
Evaluator = Callable[["Run", int], dict[str, float]]


@dataclass
class Schedule:
    """Progress is counted in generator steps; every interval is in the same unit."""

    steps: int
    batch_size: int
    d_steps: int = 1
    g_steps: int = 1
    log_every: int = 50
    sample_every: int = 500
    ckpt_every: int = 1000
    eval_every: int = 0
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
    #: One-line notes from building the run (kept launch values on resume, warnings), shown at the start.
    notes: list[str] = field(default_factory=list)
    #: Where this process came from (command, git commit, versions, device, host): provenance.json.
    provenance: dict[str, Any] = field(default_factory=dict)
    #: Sets both players' lr before each G step (None: the configured lr throughout).
    lr_schedule: LRSchedule | None = None
    #: Each player's gradient norm is clipped to this before its optimizer step (None: no clipping).
    clip_grad_norm: float | None = None
    #: Under torchrun/Slurm: this process's rank, the shared random stream, control messages (else None).
    dist: Any = None

    @property
    def info(self) -> DataInfo:
        return self.data.info
