"""What a run folder holds, and how a command line names a run: the facts that the builder, the
sweeps and `ganexp compare` all read, written once here."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Overrides that say where or how a run goes, not what it is: never hparams, never part of a
#: sweep job's folder name, never a difference between the groups of a study.
RUN_KEYS = ("out_dir", "resume", "device", "overwrite")
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
