"""Sweeps that survive their runs: folder names a user can pass back as ckpt=/resume=, a job that
fails is recorded and the others run, a one-line summary at the end, and threads per job set so
parallel jobs do not fight over the cores."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ganexp.rundir import files
from ganexp.rundir.layout import METRICS_JSON, RUN_KEYS, SWEPT_ENV, override_key, read_metrics  # noqa: F401 (SWEPT_ENV: used by cli)



def _safe(text: str) -> str:
    """Letters, digits, '.', '_' and '-' only: the name then parses as a plain override value. A
    negative number keeps its sign (``lr=-1`` names ``lr--1``, not ``lr-1``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text)
    return "-" + name[1:].strip("-") if re.match(r"-[0-9.]", name) else name.strip("-")


def job_name(_root_: DictConfig) -> str:
    """``hydra.sweep.subdir``'s name for one job: its swept values only, e.g. ``loss-gan_seed-1``
    (all its overrides when the swept keys are unknown)."""
    task = list(OmegaConf.select(_root_, "hydra.overrides.task", default=[]) or [])
    swept = set(filter(None, os.environ.get(SWEPT_ENV, "").split(",")))
    params = OmegaConf.select(_root_, "hydra.sweeper.params", default=None)
    if params:
        swept |= set(params.keys())
    keep = [o for o in task if "=" in o and override_key(o) not in RUN_KEYS and not override_key(o).startswith("hydra")
            and (not swept or override_key(o) in swept)]
    return "_".join(f"{_safe(override_key(o))}-{_value_name(o.split('=', 1)[1])}" for o in keep) or "run"


def _value_name(value: str) -> str:
    """``[ema,r1]`` -> ``ema-r1``, ``[]`` or ``null`` -> ``none``."""
    v = re.sub(r"[\[\](){}'\"]", "", value)
    return _safe(v) or "none"


def register_resolver() -> None:
    if not OmegaConf.has_resolver("ganexp_job_name"):
        OmegaConf.register_new_resolver("ganexp_job_name", job_name)


def worst(mode: str) -> float:
    """The value a minimiser (mode min) or maximiser (max) ranks last."""
    return float("inf") if mode == "min" else float("-inf")


def set_threads(hydra_cfg: Any) -> None:
    """Parallel jobs on one machine share its cores: each gets cores / jobs threads (at least 1).
    Tiny models oversubscribed run many times slower (ECOSYSTEM-NOTES: 165 vs 4 steps/s)."""
    target = str(OmegaConf.select(hydra_cfg, "launcher._target_", default="") or "")
    if "joblib" in target or ("submitit" in target and "Local" in target):
        jobs = OmegaConf.select(hydra_cfg, "launcher.n_jobs", default=None) or OmegaConf.select(
            hydra_cfg, "launcher.array_parallelism", default=None) or 1
        import torch

        cores = os.cpu_count() or 1
        jobs = cores if jobs in (-1, 0) else int(jobs)
        torch.set_num_threads(max(1, cores // max(1, min(jobs, cores))))


def record_failure(out_dir: Path, error: str) -> None:
    """A job that failed before its run wrote anything: its folder says why."""
    if (read_metrics(out_dir) or {}).get("status") not in (None, "done"):
        return  # the engine already recorded how the run ended
    files.write_text(out_dir / METRICS_JSON, json.dumps({"status": "failed", "error": error}, indent=2))


#: The last multirun's counts in this process (read by the CLI for its exit status).
LAST: dict[str, Any] | None = None


def count_jobs(sweep_dir: Path, metric: str | None = None) -> dict[str, Any]:
    """Counts of a sweep's jobs by how they ended, from each job folder's metrics.json, and each
    finished job's final ``metrics/<metric>`` (``values``, in job order)."""
    jobs = sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=lambda p: _natural(p.name)) if sweep_dir.is_dir() else []
    out: dict[str, Any] = {"dir": str(sweep_dir), "done": [], "failed": [], "skipped": [], "values": {}}
    for job in jobs:
        saved = read_metrics(job)
        status = None if saved is None else saved.get("status", "done")
        kind = "done" if status == "done" else "failed" if status in ("failed", "diverged") else "skipped"
        out[kind].append(job.name)
        if metric and kind == "done" and isinstance(saved.get(f"metrics/{metric}"), (int, float)):
            out["values"][job.name] = saved[f"metrics/{metric}"]
    return out


def _natural(name: str) -> list:  # 10_... after 9_...
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def values_text(metric: str, mode: str, values: dict[str, float]) -> str:
    """``fid_clf per job: 0_loss-gan_seed-0 31.2, ...; best 1_... 29.8`` (lowest for mode min)."""
    if not values:
        return ""
    from ganexp.rundir.summary import num

    best = (min if mode == "min" else max)(values, key=values.get)
    return (f"; {metric} per job: " + ", ".join(f"{k} {num(v)}" for k, v in values.items())
            + f"; best {best} {num(values[best])}")


class SweepSummary(Callback):
    """Prints one line when a multirun ends: how many jobs ran, failed and were skipped and, with
    ``optimized_metric`` set, each finished job's final value of it and the best job."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global LAST
        from ganexp.rundir.console import console

        metric = OmegaConf.select(config, "optimized_metric", default=None)
        LAST = count_jobs(Path(str(config.hydra.sweep.dir)), metric)
        failed = f" ({', '.join(LAST['failed'][:5])}{', ...' if len(LAST['failed']) > 5 else ''})" if LAST["failed"] else ""
        per_job = values_text(metric, OmegaConf.select(config, "optimized_mode", default="min"), LAST["values"]) if metric else ""
        console.print(f"sweep: {len(LAST['done'])} ran, {len(LAST['failed'])} failed{failed}, "
                      f"{len(LAST['skipped'])} skipped{per_job}; {LAST['dir']}  (ganexp compare {LAST['dir']})",
                      highlight=False, markup=False, soft_wrap=True)
