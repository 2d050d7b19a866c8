"""`ganexp compare PATH...`: one table for a study, a row per group of runs that differ only in seed.

Reads what every run folder leaves behind: `.hydra/overrides.yaml` (the group), `metrics.json`
(final values and status) and `stats.jsonl` (the history, for `--plot`). Plain argparse, no Hydra.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ganexp.errors import GanexpError

MARKERS = ("metrics.json", "stats.jsonl", ".hydra/overrides.yaml")
#: override keys that do not change the experiment, so runs that differ in them are one group
IGNORED = {"seed", "out_dir", "resume", "device", "overwrite"}
HIGHER = {"is", "precision", "recall", "accuracy", "modes", "hq"}  # name tokens where higher is better
STD_NOTE = "mean ± sample std (ddof=1) over seeds; std blank when n=1"


class CompareError(GanexpError):
    """Nothing to compare, or a metric name the runs do not have."""


@dataclass
class Run:
    path: Path
    overrides: dict[str, str]  # key (without +) -> value, seed included
    status: str  # done | interrupted | diverged | failed | running (stats.jsonl only) | empty
    final: dict[str, float]  # final metrics by display name (no `metrics/` prefix)
    history: dict[str, dict[int, float]]  # every logged key (as logged) -> {step: value}
    error: str = ""


@dataclass
class Row:
    label: str
    overrides: dict[str, str]  # the differing overrides only
    runs: list[Run]  # the runs that enter the statistics
    left_out: list[Run]  # not done, listed apart (empty with --all)
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


def _name(key: str) -> str:
    return key[len("metrics/"):] if key.startswith("metrics/") else key


def _natural(name: str) -> list:  # 10_... after 9_...
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _is_run(d: Path) -> bool:
    return any((d / m).is_file() for m in MARKERS)


def find_runs(paths) -> list[Path]:
    """Run folders: each PATH that is one, else every one below it (a run's own subfolders are not searched)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise CompareError(f"not a folder: {p}")
        runs = []
        for dirpath, dirnames, _ in os.walk(p):
            if _is_run(Path(dirpath)):
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


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _final_key(k: str) -> bool:
    return k.startswith("metrics/") or k in ("loss/d", "loss/g")


def read_stats(path: Path) -> dict[str, dict[int, float]]:
    """{name: {step: value}} from stats.jsonl; for each step the last line that has a value wins
    (a resumed run re-logs steps), and lines that do not parse (a crash mid-write) are skipped."""
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
            if k not in ("step", "time") and _number(v):
                history.setdefault(k, {})[step] = float(v)
    return history


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


def load_run(path) -> Run:
    path = Path(path)
    history = read_stats(path / "stats.jsonl")
    data = None
    if (path / "metrics.json").is_file():
        try:
            data = json.loads((path / "metrics.json").read_text())
        except ValueError:
            data = None
    if isinstance(data, dict):
        final = {_name(k): float(v) for k, v in data.items() if _final_key(k) and _number(v)}
        status, error = str(data.get("status", "done")), str(data.get("error", ""))
    else:  # still running, or killed before metrics.json: the last logged values
        final = {_name(k): h[max(h)] for k, h in history.items() if _final_key(k)}
        status, error = ("running" if history else "empty"), ""
    return Run(path, _overrides(path / ".hydra" / "overrides.yaml"), status, final, history, error)


def _ignored(key: str) -> bool:
    key = key.lstrip("~")
    return key in IGNORED or key.startswith(("hydra.", "hydra/"))


def group_runs(runs: list[Run]) -> dict[tuple, list[Run]]:
    """Runs by their overrides less seed and the keys that do not change the experiment, in the order found."""
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault(tuple(sorted((k, v) for k, v in r.overrides.items() if not _ignored(k))), []).append(r)
    return groups


def higher_is_better(metric: str) -> bool:
    """IS, precision, recall, accuracy, modes captured and % high quality rise as a model improves;
    FID, KID, KL divergences and losses fall."""
    tokens = set(re.split(r"[_/]", _name(metric)))
    return "kl" not in tokens and bool(tokens & HIGHER)


def summarise(groups: dict[tuple, list[Run]], sort: str | None = None, descending: bool | None = None,
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
        sort = _name(sort)
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


def _count(runs: list[Run]) -> str:
    return ", ".join(f"{n} {STATUS.get(s, s)}" for s, n in Counter(r.status for r in runs).items())


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _display(table: Table) -> tuple[list[str], list[list[str]]]:
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


def _caption(table: Table) -> str:
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
    head, cells = _display(table)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, head)) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(map(esc, c)) + " |" for c in cells]
    lines += ["", _caption(table) + "."]
    if notes(table):
        lines += ["", "Left out (not done):", "", *(f"- {esc(n)}" for n in notes(table))]
    md_path.write_text("\n".join(lines) + "\n")
    return [csv_path, md_path]


def plot_key(table: Table, metric: str) -> str:
    """The stats.jsonl key that `metric` names (with or without `metrics/`), or a one-line error."""
    keys = {k for row in table.rows for r in row.runs for k in r.history}
    for k in (metric, f"metrics/{metric}"):
        if k in keys:
            return k
    available = ", ".join(sorted(map(_name, keys))) or "none (no stats.jsonl in these runs)"
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

    name = _name(plot_key(table, metric))
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


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        raise CompareError(f"{message} (ganexp compare --help)")


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text  # override values like [ema,r1] are not markup

    p = _Parser(prog="ganexp compare", description="A table of runs grouped by their overrides less seed: "
                "mean ± std and n of every final metric; writes compare.csv and compare.md.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="sweep folders or run folders")
    p.add_argument("--sort", metavar="METRIC", help="sort the groups by this metric (best first)")
    way = p.add_mutually_exclusive_group()
    way.add_argument("--asc", dest="descending", action="store_false", default=None, help="ascending, whatever the metric")
    way.add_argument("--desc", dest="descending", action="store_true", help="descending, whatever the metric")
    p.add_argument("--all", action="store_true", help="include runs that are not done (their last values)")
    p.add_argument("--plot", metavar="METRIC", action="append", default=[], help="METRIC against step to compare_<METRIC>.png")
    p.add_argument("--band", choices=("std", "minmax"), default="std", help="the band over seeds in --plot")
    p.add_argument("--out", metavar="DIR", help="where to write (default: the first PATH if a sweep folder, else .)")
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 1000  # piped or logged: one line per row rather than 80-column wrapping
    try:
        args = p.parse_args(argv)
        table = summarise(group_runs([load_run(r) for r in find_runs(args.paths)]), args.sort, args.descending, args.all)
        for m in args.plot:  # check every name before writing anything
            plot_key(table, m)
        first = Path(args.paths[0])
        out = Path(args.out) if args.out else first if not _is_run(first) else Path.cwd()
        out.mkdir(parents=True, exist_ok=True)
        written = write_tables(table, out) + [plot(table, m, out, args.band) for m in args.plot]
    except GanexpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    head, cells = _display(table)
    rich = RichTable(caption=_caption(table), title=f"{sum(r.n for r in table.rows)} runs in {len(cells)} groups")
    for h in head:
        rich.add_column(Text(h))
    for c in cells:
        rich.add_row(*map(Text, c))
    console.print(rich)
    for line in notes(table):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    for path in written:
        console.print(f"wrote {path}", highlight=False, markup=False, soft_wrap=True)
    return 0
