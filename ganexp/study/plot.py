"""A study's curves: a metric against training steps, images seen or seconds, a line per group
(its own colour, line style and markers at the logged points) with a band over seeds."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ganexp.study import stats as st
from ganexp.study.runs import CompareError, display_name, x_of
from ganexp.study.table import Table

BANDS = ("ci", "std", "minmax")
BAND_TITLE = {"ci": "95% CI of the mean", "std": "± std (clipped to the metric's range)", "minmax": "min-max"}
X_LABEL = {"step": "step", "images": "real images seen by D", "seconds": "training seconds"}
STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_key(table: Table, metric: str) -> str:
    """The stats.jsonl key that `metric` names (with or without `metrics/`), or a one-line error."""
    keys = {k for row in table.rows for r in row.runs for k in r.history}
    for k in (metric, f"metrics/{metric}"):
        if k in keys:
            return k
    available = ", ".join(sorted(map(display_name, keys))) or "none (no stats.jsonl in these runs)"
    raise CompareError(f"unknown metric '{metric}' for --plot; available: {available}")


def value_range(metric: str) -> tuple[float, float]:
    """Where a metric's values can lie, from its name: counts, distances, FID and KL divergences are
    at least 0, percentages at most 100, precision, recall and accuracies at most 1, IS at least 1;
    losses and the rest are unbounded (KID's unbiased estimate can be negative)."""
    tokens = set(re.split(r"[_/]", display_name(metric)))
    if metric.startswith("loss/") or "kid" in tokens or not metric.startswith("metrics/") and "/" in metric:
        return -math.inf, math.inf
    if "percent" in tokens:
        return 0.0, 100.0
    if tokens & {"precision", "recall", "acc", "accuracy"}:
        return 0.0, 1.0
    if "is" in tokens and "real" not in tokens:
        return 1.0, math.inf
    return 0.0, math.inf


def curves(table: Table, metric: str, band: str = "ci", x: str = "step") -> dict[str, tuple[list[float], np.ndarray, np.ndarray, np.ndarray]]:
    """{group label: (x, mean, low, high)} of `metric` over each group's runs at every logged step
    (x: the step, images seen or the mean over runs of the training seconds at that step). The band
    is the 95% Student-t CI of the mean, mean ± sample std, or min-max; the first two are clipped to
    the metric's range (`value_range`) and are empty (low = high = mean) where one run has the step."""
    key, out = plot_key(table, metric), {}
    lo_lim, hi_lim = value_range(key)
    for row in table.rows:
        runs = [r for r in row.runs if key in r.history]
        if not runs:
            continue
        steps = sorted(set().union(*(r.history[key] for r in runs)))
        xs = {id(r): dict(zip(sorted(r.history[key]), x_of(r, sorted(r.history[key]), x))) for r in runs}
        vals = [np.array([r.history[key][t] for r in runs if t in r.history[key]]) for t in steps]
        where = [float(np.mean([xs[id(r)][t] for r in runs if t in r.history[key]])) for t in steps]
        mean = np.array([v.mean() for v in vals])
        if band == "minmax":
            lo, hi = np.array([v.min() for v in vals]), np.array([v.max() for v in vals])
        else:
            if band == "ci":
                half = [(c[1] - c[0]) / 2 if (c := st.mean_ci(v.tolist())) else 0.0 for v in vals]
            else:
                half = [v.std(ddof=1) if len(v) > 1 else 0.0 for v in vals]
            lo, hi = np.clip(mean - half, lo_lim, hi_lim), np.clip(mean + half, lo_lim, hi_lim)
        out[f"{row.label} (n={len(runs)})"] = (where, mean, lo, hi)
    return out


def figure(table: Table, metric: str, band: str = "ci", x: str = "step"):
    """The figure of `curves`: a colour, a line style and a marker per group."""
    from matplotlib.figure import Figure  # Agg through savefig; no pyplot state

    name = display_name(plot_key(table, metric))
    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for i, (label, (xs, mean, lo, hi)) in enumerate(curves(table, metric, band, x).items()):
        every = max(1, len(xs) // 25)  # markers at the logged points, at most ~25 per line
        (line,) = ax.plot(xs, mean, label=label, linestyle=STYLES[i % len(STYLES)], marker=MARKERS[i % len(MARKERS)],
                          markevery=every, markersize=4)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set(xlabel=X_LABEL[x], ylabel=name, title=f"{name}: mean and {BAND_TITLE[band]} over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig, name


def plot(table: Table, metric: str, out_dir, band: str = "ci", x: str = "step") -> Path:
    """compare_<metric>.png (compare_<metric>_<x>.png for --x images|seconds) in out_dir."""
    fig, name = figure(table, metric, band, x)
    suffix = "" if x == "step" else f"_{x}"
    path = Path(out_dir) / f"compare_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}{suffix}.png"
    fig.savefig(path)
    return path
