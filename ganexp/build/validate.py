"""Checks of a composed config that its types cannot express: ranges, choices and combinations,
each failing in one line that names the key."""
from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from ganexp.engine.lr_schedule import KINDS
from ganexp.errors import ConfigError

#: train.amp -> autocast dtype.
AMP = {"none": None, "bf16": torch.bfloat16}


def validate(cfg: DictConfig) -> None:
    """Range checks the typed schema cannot express; each failure is one line naming the key."""
    checks = [
        (cfg.optimizer.g.lr > 0, f"optimizer.g.lr must be > 0, got {cfg.optimizer.g.lr}"),
        (cfg.optimizer.d.lr > 0, f"optimizer.d.lr must be > 0, got {cfg.optimizer.d.lr}"),
        (cfg.optimizer.d_steps >= 1, f"optimizer.d_steps must be >= 1, got {cfg.optimizer.d_steps}"),
        (cfg.optimizer.g_steps >= 1, f"optimizer.g_steps must be >= 1, got {cfg.optimizer.g_steps}"),
        (cfg.optimizer.schedule in KINDS, f"optimizer.schedule must be one of {', '.join(KINDS)}, got '{cfg.optimizer.schedule}'"),
        (cfg.optimizer.warmup_steps >= 0, f"optimizer.warmup_steps must be >= 0, got {cfg.optimizer.warmup_steps}"),
        (cfg.optimizer.schedule != "warmup" or cfg.optimizer.warmup_steps > 0,
         "optimizer.schedule=warmup needs optimizer.warmup_steps > 0"),
        (cfg.optimizer.schedule not in ("linear", "cosine") or cfg.optimizer.decay_steps > cfg.optimizer.warmup_steps,
         f"optimizer.decay_steps ({cfg.optimizer.decay_steps}) must be > optimizer.warmup_steps ({cfg.optimizer.warmup_steps})"),
        (cfg.optimizer.clip_grad_norm is None or cfg.optimizer.clip_grad_norm > 0,
         f"optimizer.clip_grad_norm must be > 0 or null, got {cfg.optimizer.clip_grad_norm}"),
        (cfg.train.steps >= 0, f"train.steps must be >= 0, got {cfg.train.steps}"),
        (cfg.train.batch_size >= 1, f"train.batch_size must be >= 1, got {cfg.train.batch_size}"),
        (cfg.train.log_every >= 1, f"train.log_every must be >= 1, got {cfg.train.log_every}"),
        (cfg.train.sample_every >= 0, f"train.sample_every must be >= 0, got {cfg.train.sample_every}"),
        (cfg.train.ckpt_every >= 0, f"train.ckpt_every must be >= 0, got {cfg.train.ckpt_every}"),
        (cfg.train.num_fixed >= 1, f"train.num_fixed must be >= 1, got {cfg.train.num_fixed}"),
        (cfg.latent.dim >= 1, f"latent.dim must be >= 1, got {cfg.latent.dim}"),
        (cfg.optimized_mode in ("min", "max"), f"optimized_mode must be min or max, got '{cfg.optimized_mode}'"),
        (cfg.train.amp in AMP, f"train.amp must be one of {', '.join(AMP)}, got '{cfg.train.amp}'"
                               + ("; fp16 needs loss scaling that ganexp does not do: use bf16" if cfg.train.amp == "fp16" else "")),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def check_objective(name: str | None, evaluators: list[Any]) -> None:
    """``optimized_metric`` must be something a configured metric logs (``fid_clf``, or a value of
    one such as ``modes_reverse_kl``), or a sweep would optimise nothing."""
    if not name:
        return
    made = [n for ev in evaluators for n in str(getattr(ev, "name", "")).split("+") if n and n != "none"]
    if not any(name == n or name.startswith(f"{n}_") for n in made):
        have = f"the metrics here log {', '.join(made)}" if made else "no metric is configured (metrics=[...])"
        raise ConfigError(f"optimized_metric={name} is not computed: {have}; choose one of them or add its metric")
