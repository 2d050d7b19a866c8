"""A study's curves: a metric against the step, a line per group with its band over seeds."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ganexp.study.runs import CompareError, display_name
from ganexp.study.table import Table


def plot_key(table: Table, metric: str) -> str:
    """The stats.jsonl key that `metric` names (with or without `metrics/`), or a one-line error."""
    keys = {k for row in table.rows for r in row.runs for k in r.history}
    for k in (metric, f"metrics/{metric}"):
        if k in keys:
            return k
    available = ", ".join(sorted(map(display_name, keys))) or "none (no stats.jsonl in these runs)"
    raise CompareError(f"unknown metric '{metric}' for --plot; available: {available}")


def curves(table: Table, metric: str, band: str = "std") -> dict[str, tuple[list[int], np.ndarray, np.ndarray, np.ndarray]]:
    """{group label: (steps, mean, low, high)} of `metric` over each group's runs at every logged step;
    the band is mean ± sample std (0 where one run has the step) or min-max."""
    key, out = plot_key(table, metric), {}
    for row in table.rows:
        series = [r.history[key] for r in row.runs if key in r.history]
        if not series:
            continue
        steps = sorted(set().union(*series))
        vals = [np.array([s[t] for s in series if t in s]) for t in steps]
        mean = np.array([v.mean() for v in vals])
        if band == "minmax":
            lo, hi = np.array([v.min() for v in vals]), np.array([v.max() for v in vals])
        else:
            std = np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in vals])
            lo, hi = mean - std, mean + std
        out[f"{row.label} (n={len(series)})"] = (steps, mean, lo, hi)
    return out


def plot(table: Table, metric: str, out_dir, band: str = "std") -> Path:
    """compare_<metric>.png in out_dir: a line per group with its band over seeds (see `curves`)."""
    from matplotlib.figure import Figure  # Agg through savefig; no pyplot state

    name = display_name(plot_key(table, metric))
    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for label, (steps, mean, lo, hi) in curves(table, metric, band).items():
        (line,) = ax.plot(steps, mean, label=label)
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set(xlabel="step", ylabel=name, title=f"{name}: mean and {'min-max' if band == 'minmax' else '± std'} over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    path = Path(out_dir) / f"compare_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    fig.savefig(path)
    return path
