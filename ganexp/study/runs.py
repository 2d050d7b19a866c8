"""Reading run folders: what each run of a study left behind (its overrides, final metrics and
status, and its logged history), without importing torch."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ganexp.errors import GanexpError
from ganexp.rundir.layout import METRICS_JSON, STATS_JSONL, number, read_metrics, read_stats

#: Any of these makes a folder a run folder.
MARKERS = (METRICS_JSON, STATS_JSONL, ".hydra/overrides.yaml")


class CompareError(GanexpError):
    """Nothing to compare, or a metric name the runs do not have."""


@dataclass
class RunRecord:
    path: Path
    overrides: dict[str, str]  # key (without +) -> value, seed included
    status: str  # done | interrupted | diverged | failed | running (stats.jsonl only) | empty
    final: dict[str, float]  # final metrics by display name (no `metrics/` prefix)
    history: dict[str, dict[int, float]]  # every logged key (as logged) -> {step: value}
    error: str = ""
    seconds: dict[int, float] = field(default_factory=dict)  # step -> training seconds (stats.jsonl's time)
    images_per_step: float | None = None  # real images D sees per step: train.batch_size x optimizer.d_steps


def display_name(key: str) -> str:
    return key[len("metrics/"):] if key.startswith("metrics/") else key


def _natural(name: str) -> list:  # 10_... after 9_...
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def is_run_dir(d: Path) -> bool:
    return any((d / m).is_file() for m in MARKERS)


def find_runs(paths) -> list[Path]:
    """Run folders: each PATH that is one, else every one below it (a run's own subfolders are not searched)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise CompareError(f"not a folder: {p}")
        runs = []
        for dirpath, dirnames, _ in os.walk(p):
            if is_run_dir(Path(dirpath)):
                runs.append(Path(dirpath))
                dirnames.clear()
            dirnames[:] = sorted((n for n in dirnames if not n.startswith(".")), key=_natural)
        if not runs:
            raise CompareError(f"no run folders found under {p} (a run folder holds metrics.json, stats.jsonl or .hydra/overrides.yaml)")
        found += runs
    unique: dict[Path, Path] = {}
    for r in found:  # a run reached through two PATHs counts once
        unique.setdefault(r.resolve(), r)
    return list(unique.values())


def _final_key(k: str) -> bool:
    return k.startswith("metrics/") or k in ("loss/d", "loss/g")


def _images_per_step(path: Path) -> float | None:
    """train.batch_size (the global batch) x optimizer.d_steps from the run's resolved config."""
    try:
        cfg = yaml.safe_load(path.read_text())
        b, d = cfg["train"]["batch_size"], (cfg.get("optimizer") or {}).get("d_steps", 1)
        return float(b) * float(d)
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError):
        return None


#: What --x and --reach measure a run's progress in.
X_UNITS = ("step", "images", "seconds")


def x_of(run: RunRecord, steps, unit: str) -> list[float]:
    """The steps of ``run`` as training steps, real images seen by D, or training seconds."""
    if unit == "step":
        return [float(s) for s in steps]
    if unit == "images":
        if run.images_per_step is None:
            raise CompareError(f"--x images needs train.batch_size in {run.path / '.hydra' / 'config.yaml'}")
        return [s * run.images_per_step for s in steps]
    missing = [s for s in steps if s not in run.seconds]
    if missing:
        raise CompareError(f"--x seconds: {run.path / 'stats.jsonl'} has no time at step {missing[0]}")
    return [run.seconds[s] for s in steps]


def _overrides(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        items = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CompareError(f"unreadable {path}: {str(e).splitlines()[0]}") from None
    out = {}
    for o in items if isinstance(items, list) else []:
        k, _, v = str(o).partition("=")
        v = v.strip()
        if v.startswith("["):
            v = re.sub(r"\s*,\s*", ",", v)
        out[k.strip().lstrip("+")] = v
    return out


def load_run(path) -> RunRecord:
    """One run folder as a record: final values from metrics.json, or from the last logged values
    of stats.jsonl when the run is still going (or was killed before writing metrics.json)."""
    path = Path(path)
    seconds: dict[int, float] = {}
    history = read_stats(path / "stats.jsonl", seconds)
    data = read_metrics(path)
    if data is not None:
        final = {display_name(k): float(v) for k, v in data.items() if _final_key(k) and number(v)}
        status, error = str(data.get("status", "done")), str(data.get("error", ""))
    else:  # still running, or killed before metrics.json: the last logged values
        final = {display_name(k): h[max(h)] for k, h in history.items() if _final_key(k)}
        status, error = ("running" if history else "empty"), ""
    return RunRecord(path, _overrides(path / ".hydra" / "overrides.yaml"), status, final, history, error,
                     seconds, _images_per_step(path / ".hydra" / "config.yaml"))
