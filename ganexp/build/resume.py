"""Resuming a run: what must match its checkpoint, and which settings keep their launch values."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from ganexp.errors import ConfigError

#: What a resumed run must share with its checkpoint: the models, the game and the data they learn.
RESUME_KEYS = ("dataset", "generator", "discriminator", "loss", "conditional", "latent")
#: Dataset settings that say where and how to read the data, not what it is: free to change on resume.
RESUME_FREE = ("root", "download", "num_workers")


def _first_diff(a: Any, b: Any, key: str) -> tuple[str, Any, Any]:
    """The first key path where two config values differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in [*a, *(k for k in b if k not in a)]:
            if a.get(k) != b.get(k):
                return _first_diff(a.get(k), b.get(k), f"{key}.{k}")
    return key, a, b


def _known(now: Any, saved: Any) -> Any:
    """``now`` restricted to the keys the checkpoint's config has: options added to ganexp after
    the run was saved do not block resuming it (a real change still fails to load its weights)."""
    if isinstance(now, dict) and isinstance(saved, dict):
        return {k: _known(v, saved[k]) for k, v in now.items() if k in saved}
    return now


def check_resume(cfg: DictConfig, saved: dict[str, Any]) -> None:
    """A resumed run continues the same experiment: one line naming what differs, not a silent switch
    (optimizer settings, train.* and trick settings may change; the set of tricks may not)."""
    now = OmegaConf.to_container(cfg, resolve=True)
    now, saved = ({**c, "dataset": {k: v for k, v in (c.get("dataset") or {}).items() if k not in RESUME_FREE}}
                  for c in (now, saved))
    diff = [k for k in RESUME_KEYS if k in saved and _known(now.get(k), saved[k]) != saved[k]]
    if list(now.get("tricks") or {}) != list(saved.get("tricks") or {}):
        diff.append("tricks")
    if diff:
        k = diff[0]
        where, was, is_ = _first_diff(saved.get(k), now.get(k), k)
        if k == "tricks":
            where, was, is_ = k, list(saved.get(k) or {}), list(now.get(k) or {})
        raise ConfigError(f"the checkpoint does not fit this config: {', '.join(diff)} differ{'' if len(diff) > 1 else 's'} "
                          f"({where}: checkpoint {was}, now {is_}); resume with the run's own options or start a new run")


def keep_launch_values(cfg: DictConfig, saved: dict[str, Any], path: str = "") -> list[str]:
    """On resume, settings that refer to another option (``anneal_steps: ${train.steps}``) keep the
    value they resolved to at launch, so extending a run with a larger ``train.steps`` does not
    restart its schedules. Environment lookups (``${oc.env:...}``) are re-read. Returns a note for
    each value that would otherwise have changed; a value given on the command line is not a
    reference and wins as usual."""
    notes = []
    for key in cfg:
        if not isinstance(saved, dict) or key not in saved or (not path and key in RESUME_KEYS):
            continue  # the models, data and loss must match the checkpoint anyway (check_resume)
        where = f"{path}{key}"
        if OmegaConf.is_interpolation(cfg, key):
            ref = str(cfg._get_node(key)._value())
            if ":" in ref:  # a resolver (oc.env, now): not a reference to another option
                continue
            now = cfg[key]
            if now != saved[key]:
                cfg[key] = saved[key]
                notes.append(f"resume keeps {where}={saved[key]} as launched ({ref} would now give {now}); "
                             f"set {where} on the command line to change it")
        elif isinstance(cfg[key], DictConfig):
            notes += keep_launch_values(cfg[key], saved[key], f"{where}.")
    return notes
