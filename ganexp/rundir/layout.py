"""What a run folder holds, and how a command line names a run: the facts that the builder, the
sweeps and `ganexp compare` all read, written once here."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Overrides that say where or how a run goes, not what it is: never hparams, never part of a
#: sweep job's folder name, never a difference between the groups of a study.
RUN_KEYS = ("out_dir", "resume", "device", "overwrite")
#: The keys swept on a multirun's command line (set by `ganexp` before Hydra parses argv; inherited
#: by the processes of parallel launchers): sweep job names and TensorBoard's HPARAMS columns read it.
SWEPT_ENV = "GANEXP_SWEPT"
#: A line per log interval and per evaluation: step, training seconds (``time``) and the values.
STATS_JSONL = "stats.jsonl"
#: The final record of a run: its last logged values, ``step`` and ``status`` (done, interrupted,
#: diverged, failed) and, when it did not finish, ``error``.
METRICS_JSON = "metrics.json"


def override_key(override: str) -> str:
    """The key of a ``key=value`` override, without Hydra's ``+``/``++``/``~`` prefixes."""
    return override.split("=", 1)[0].lstrip("+~")


def read_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """A run folder's metrics.json as a dict; None when it is missing, unreadable or not a dict."""
    try:
        data = json.loads((Path(run_dir) / METRICS_JSON).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_stats(path: Path, seconds: dict[int, float] | None = None) -> dict[str, dict[int, float]]:
    """{name: {step: value}} from stats.jsonl; for each step the last line that has a value wins
    (a resumed run re-logs steps), and lines that do not parse (a crash mid-write) are skipped.
    ``seconds`` (when given) receives each step's training seconds from the last line of that step."""
    history: dict[str, dict[int, float]] = {}
    if not path.is_file():
        return history
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
            step = int(rec["step"])
        except (ValueError, KeyError, TypeError):
            continue
        for k, v in rec.items():
            if k not in ("step", "time") and number(v):
                history.setdefault(k, {})[step] = float(v)
        if seconds is not None and number(rec.get("time")):
            seconds[step] = float(rec["time"])
    return history
