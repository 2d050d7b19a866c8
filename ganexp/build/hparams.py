"""A run's hparams for TensorBoard's HPARAMS tab: the group choices, the main numbers, and every
command-line override (so a sweep's swept values are columns)."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from ganexp.rundir.layout import RUN_KEYS, SWEPT_ENV, override_key
from ganexp.rundir.tb_hparams import HParams

def override_hparams(overrides: list[str]) -> dict[str, Any]:
    """``key=value`` command-line overrides as hparams (numbers as numbers, lists as text)."""
    import yaml

    hp: dict[str, Any] = {}
    for o in overrides:
        key, raw = override_key(o), o.partition("=")[2]
        if "=" not in o or key.startswith(("hydra.", "hydra/")) or key in RUN_KEYS:
            continue
        for parse in (int, float, yaml.safe_load):  # YAML alone reads 1e-3 as text
            try:
                v = parse(raw)
                break
            except (ValueError, yaml.YAMLError):
                v = raw
        hp[key] = v if isinstance(v, (int, float, str, bool)) else raw
    return hp


def hparams(cfg: DictConfig) -> HParams:
    """The run's hparams: the group choices, the main numbers, every command-line override; in a
    multirun the swept keys first and marked as ``swept`` (TensorBoard's HPARAMS then shows them)."""
    hp: dict[str, Any] = {}
    overrides: list[str] = []
    swept: set[str] = set()
    try:
        import os

        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        hp.update({k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra/") and v})
        overrides = list(hc.overrides.task)
        if hc.mode == RunMode.MULTIRUN:  # swept on the command line, or by the sweeper's params (a preset)
            swept = set(filter(None, os.environ.get(SWEPT_ENV, "").split(","))) | set((hc.sweeper.get("params") or {}).keys())
    except ValueError:  # not under @hydra.main (tests, notebooks)
        pass
    hp.update({"lr_g": cfg.optimizer.g.lr, "lr_d": cfg.optimizer.d.lr, "d_steps": cfg.optimizer.d_steps,
               "batch_size": cfg.train.batch_size, "seed": cfg.seed, "tricks": ",".join(cfg.tricks or {}) or "none"})
    hp.update(override_hparams(overrides))
    first = [k for k in hp if k in swept]
    return HParams({k: hp[k] for k in [*first, *(k for k in hp if k not in swept)]}, swept=first)
