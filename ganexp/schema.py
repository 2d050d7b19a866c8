"""Typed schema for the parts of the config every run has; Hydra rejects wrong types
(``optimizer.d.lr=abc``) before any work starts. Groups whose options differ in shape
(dataset, models, loss, tricks) stay free-form and are checked when built."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING


@dataclass
class OptimSpec:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 2.0e-4
    betas: Optional[List[float]] = None
    momentum: Optional[float] = None
    alpha: Optional[float] = None
    eps: Optional[float] = None
    weight_decay: Optional[float] = None
    nesterov: Optional[bool] = None
    fused: Optional[bool] = None  # true: one fused kernel per step (Adam, AdamW, SGD; CPU and CUDA)


@dataclass
class OptimizerConfig:
    g: OptimSpec = field(default_factory=OptimSpec)
    d: OptimSpec = field(default_factory=OptimSpec)
    d_steps: int = 1  # discriminator steps per generator step
    g_steps: int = 1
    schedule: str = "constant"  # lr schedule of both players: constant | warmup | linear | cosine
    warmup_steps: int = 0  # linear warm-up over the first G steps (any schedule)
    decay_steps: int = II("train.steps")  # linear and cosine reach 0 here (kept as launched on resume)
    clip_grad_norm: Optional[float] = None  # clip each player's gradient norm to this before its step


@dataclass
class TrainLoop:
    steps: int = 2000  # generator steps
    batch_size: int = 64
    log_every: int = 50
    sample_every: int = 500
    ckpt_every: int = 1000
    num_fixed: int = 64  # latents of the sample grid (points: of the scatter plot)
    amp: str = "none"  # none | bf16: autocast of the forward passes
    compile: bool = False  # torch.compile G and D for the training step
    sync_bn: bool = False  # DDP on CUDA: batch norm statistics over the global batch (SyncBatchNorm)
    channels_last: bool = False  # image models in channels_last memory format (faster convolutions on tensor cores)
    tf32: bool = True  # CUDA: TF32 matmuls and convolutions (Ampere+); false for full fp32


@dataclass
class LatentConfig:
    dim: int = 100
    prior: str = "normal"  # normal | uniform | sphere


@dataclass
class TrainConfig:
    dataset: Any = MISSING
    generator: Any = MISSING
    discriminator: Any = MISSING
    loss: Any = MISSING
    tricks: Any = field(default_factory=dict)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    train: TrainLoop = field(default_factory=TrainLoop)
    eval: Any = field(default_factory=dict)
    conditional: bool = False
    seed: int = 0
    device: str = "auto"
    resume: Optional[str] = None
    out_dir: Optional[str] = None
    overwrite: bool = False  # true: a new run may replace an earlier run in out_dir
    optimized_metric: Optional[str] = None
    optimized_mode: str = "min"


def register() -> None:
    from ganexp.sweep import register_resolver

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    register_resolver()  # ${ganexp_job_name:} names sweep folders


register()
