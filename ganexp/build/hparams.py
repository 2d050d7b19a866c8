"""A run's hparams for TensorBoard's HPARAMS tab: the group choices, the main numbers, and every
command-line override (so a sweep's swept values are columns)."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from ganexp.rundir.layout import RUN_KEYS, override_key

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


def hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's hparams: the group choices, the main numbers, every command-line override."""
    hp: dict[str, Any] = {}
    overrides: list[str] = []
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        hp.update({k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra/") and v})
        overrides = list(hc.overrides.task)
    except ValueError:  # not under @hydra.main (tests, notebooks)
        pass
    hp.update({"lr_g": cfg.optimizer.g.lr, "lr_d": cfg.optimizer.d.lr, "d_steps": cfg.optimizer.d_steps,
               "batch_size": cfg.train.batch_size, "seed": cfg.seed, "tricks": ",".join(cfg.tricks or {}) or "none"})
    hp.update(override_hparams(overrides))
    return hp
