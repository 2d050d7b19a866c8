"""Types of the config every run has; the values live in the YAML under ``conf/`` (the one source
of defaults: every field here is MISSING, or None where "unset" is a value). Hydra rejects a wrong
type (``optimizer.d.lr=abc``) before any work starts. Groups whose options differ in shape
(dataset, models, loss, tricks, metrics) stay free-form and are checked when built."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class OptimSpec:
    _target_: str = MISSING
    _partial_: bool = True
    lr: float = MISSING
    # keyword arguments of the optimizer class; None: not passed (the class's own default)
    betas: Optional[List[float]] = None
    momentum: Optional[float] = None
    alpha: Optional[float] = None
    eps: Optional[float] = None
    weight_decay: Optional[float] = None
    nesterov: Optional[bool] = None
    fused: Optional[bool] = None


@dataclass
class OptimizerConfig:
    g: OptimSpec = field(default_factory=OptimSpec)
    d: OptimSpec = field(default_factory=OptimSpec)
    d_steps: int = MISSING
    g_steps: int = MISSING
    schedule: str = MISSING
    warmup_steps: int = MISSING
    decay_steps: int = MISSING
    clip_grad_norm: Optional[float] = MISSING


@dataclass
class TrainLoop:
    steps: int = MISSING
    batch_size: int = MISSING
    log_every: int = MISSING
    sample_every: int = MISSING
    ckpt_every: int = MISSING
    num_fixed: int = MISSING
    amp: str = MISSING
    compile: bool = MISSING
    compile_mode: str = MISSING
    sync_bn: bool = MISSING
    channels_last: Optional[bool] = MISSING
    threads: Optional[int] = MISSING
    tf32: bool = MISSING


@dataclass
class LatentConfig:
    dim: int = MISSING
    prior: str = MISSING


@dataclass
class EvalConfig:
    every: int = MISSING
    num_samples: int = MISSING
    batch_size: int = MISSING
    best: Optional[str] = MISSING
    best_mode: str = MISSING
    cache_dir: str = MISSING
    inception_weights: Optional[str] = MISSING
    #: metric name -> its ``_target_`` node, filled by ``metrics=[...]`` (conf/metrics/*.yaml)
    metrics: Any = field(default_factory=dict)


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
    eval: EvalConfig = field(default_factory=EvalConfig)
    conditional: bool = MISSING
    seed: int = MISSING
    device: str = MISSING
    resume: Optional[str] = MISSING
    out_dir: Optional[str] = MISSING
    overwrite: bool = MISSING
    optimized_metric: Optional[str] = MISSING
    optimized_mode: str = MISSING


def register() -> None:
    """Store the schema as ``train_schema`` (conf/train.yaml's first default); idempotent."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


register()
