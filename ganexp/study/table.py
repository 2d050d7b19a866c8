"""A study's table: runs grouped by their overrides less seed, a row per group with mean, std and
n of every final metric, written as CSV (full precision) and Markdown (as printed)."""
from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ganexp.rundir.layout import RUN_KEYS
from ganexp.study.runs import CompareError, RunRecord, display_name

#: override keys that do not change the experiment, so runs that differ in them are one group
IGNORED = {"seed", *RUN_KEYS}
HIGHER = {"is", "precision", "recall", "accuracy", "acc", "modes", "hq"}  # name tokens where higher is better
STD_NOTE = "mean ± sample std (ddof=1) over seeds; std blank when n=1"


@dataclass
class Row:
    label: str
    overrides: dict[str, str]  # the differing overrides only
    runs: list[RunRecord]  # the runs that enter the statistics
    left_out: list[RunRecord]  # not done, listed apart (empty with --all)
    stats: dict[str, tuple[float, float | None, int]] = field(default_factory=dict)  # mean, std, n

    @property
    def n(self) -> int:
        return len(self.runs)


@dataclass
class Table:
    columns: list[str]  # overrides that differ between groups
    metrics: list[str]
    rows: list[Row]
    sort: str | None = None
    descending: bool = False


def _ignored(key: str) -> bool:
    key = key.lstrip("~")
    return key in IGNORED or key.startswith(("hydra.", "hydra/"))


def group_runs(runs: list[RunRecord]) -> dict[tuple, list[RunRecord]]:
    """Runs by their overrides less seed and the keys that do not change the experiment, in the order found."""
    groups: dict[tuple, list[RunRecord]] = {}
    for r in runs:
        groups.setdefault(tuple(sorted((k, v) for k, v in r.overrides.items() if not _ignored(k))), []).append(r)
    return groups


def higher_is_better(metric: str) -> bool:
    """IS, precision, recall, accuracy, modes captured and % high quality rise as a model improves;
    FID, KID, KL divergences and losses fall."""
    tokens = set(re.split(r"[_/]", display_name(metric)))
    return "kl" not in tokens and bool(tokens & HIGHER)


def tabulate(groups: dict[tuple, list[RunRecord]], sort: str | None = None, descending: bool | None = None,
              include_all: bool = False) -> Table:
    """A row per group: mean, sample std (ddof=1; None for n=1) and n of every final metric over the
    runs that finished (all runs with include_all), sorted by `sort` (direction from its name unless given)."""
    order = dict.fromkeys(k for runs in groups.values() for r in runs for k in r.overrides if not _ignored(k))
    columns = [k for k in order if len({dict(key).get(k) for key in groups}) > 1]
    rows, metrics = [], []
    for key, runs in groups.items():
        d = dict(key)
        over = {k: d.get(k, "(default)") for k in columns}
        label = " ".join(f"{k}={v}" for k, v in (over.items() if columns else key)) or "(defaults)"
        used = [include_all or r.status == "done" for r in runs]
        rows.append(Row(label, over, [r for r, u in zip(runs, used) if u], [r for r, u in zip(runs, used) if not u]))
        metrics += [m for r in rows[-1].runs for m in r.final]
    metrics = list(dict.fromkeys(m for m in metrics if not m.startswith("loss/")))
    metrics += sorted({m for row in rows for r in row.runs for m in r.final if m.startswith("loss/")})
    for row in rows:
        for m in metrics:
            a = np.array([r.final[m] for r in row.runs if m in r.final])
            if len(a):
                row.stats[m] = (float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else None, len(a))
    table = Table(columns, metrics, rows)
    if sort is not None:
        sort = display_name(sort)
        if sort not in metrics:
            raise CompareError(f"unknown metric '{sort}' for --sort; available: {', '.join(metrics) or 'none'}")
        table.sort, table.descending = sort, higher_is_better(sort) if descending is None else descending
        sign = -1 if table.descending else 1

        def rank(row: Row):
            mean = row.stats.get(sort, (math.nan,))[0]
            return (1, 0.0) if math.isnan(mean) else (0, sign * mean)  # groups without a value go last

        rows.sort(key=rank)
        metrics.insert(0, metrics.pop(metrics.index(sort)))
    return table


STATUS = {"running": "running/unknown (no metrics.json)", "empty": "empty (no metrics, no stats)"}


def _count(runs: list[RunRecord]) -> str:
    return ", ".join(f"{n} {STATUS.get(s, s)}" for s, n in Counter(r.status for r in runs).items())


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def display(table: Table) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the console and Markdown tables (4 significant digits)."""
    head = [*(table.columns or ["overrides"]), "n", *table.metrics]
    cells = []
    for row in table.rows:
        odd = [r for r in row.runs if r.status != "done"]
        n = f"{row.n} ({_count(odd)})" if odd else str(row.n)
        vals = []
        for m in table.metrics:
            if m not in row.stats:
                vals.append("")
                continue
            mean, std, k = row.stats[m]
            vals.append(_fmt(mean) + ("" if std is None else f" ± {_fmt(std)}") + ("" if k == row.n else f" (n={k})"))
        cells.append([*(row.overrides.values() if table.columns else [row.label]), n, *vals])
    return head, cells


def caption(table: Table) -> str:
    text = STD_NOTE
    if table.sort:
        better = "higher" if higher_is_better(table.sort) else "lower"
        text += f"; sorted by {table.sort}, {'descending' if table.descending else 'ascending'} ({better} is better)"
    return text


def notes(table: Table) -> list[str]:
    """A line per group whose runs did not all finish and were left out."""
    lines = []
    for row in table.rows:
        if row.left_out:
            errs = "; ".join(f"{r.path.name}: {r.error.splitlines()[0][:100]}" for r in row.left_out if r.error)
            lines.append(f"{row.label}: {_count(row.left_out)} left out" + (f" ({errs})" if errs else "") + " (--all includes them)")
    return lines


def write_tables(table: Table, out_dir) -> list[Path]:
    """compare.csv (full precision, std blank for n=1) and compare.md (as printed) in out_dir."""
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / "compare.csv", out_dir / "compare.md"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*table.columns, "n", *(f"{m}_{s}" for m in table.metrics for s in ("mean", "std", "n")),
                    "status", "left_out", "runs"])
        for row in table.rows:
            stats = []
            for m in table.metrics:
                mean, std, k = row.stats.get(m, ("", None, 0))
                stats += [repr(mean) if k else "", "" if std is None else repr(std), k]
            w.writerow([*row.overrides.values(), row.n, *stats, _count(row.runs), _count(row.left_out),
                        ";".join(str(r.path) for r in row.runs)])
    head, cells = display(table)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, head)) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(map(esc, c)) + " |" for c in cells]
    lines += ["", caption(table) + "."]
    if notes(table):
        lines += ["", "Left out (not done):", "", *(f"- {esc(n)}" for n in notes(table))]
    md_path.write_text("\n".join(lines) + "\n")
    return [csv_path, md_path]
