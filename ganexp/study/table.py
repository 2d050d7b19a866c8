"""A study's table: runs grouped by their overrides less seed, a row per group with mean, std, n and
the 95% confidence interval of the mean of every final metric, each group tested against the best
on one metric (``stats.vs_best``), optionally the time each group took to reach a value; written as
CSV (full precision) and Markdown (as printed, rounded to the precision the spread supports)."""
from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ganexp.rundir.layout import RUN_KEYS
from ganexp.study import stats as st
from ganexp.study.runs import CompareError, RunRecord, display_name, x_of

#: override keys that do not change the experiment, so runs that differ in them are one group
IGNORED = {"seed", *RUN_KEYS}
HIGHER = {"is", "precision", "recall", "accuracy", "acc", "modes", "hq"}  # name tokens where higher is better
STD_NOTE = ("mean ± sample std (ddof=1) over seeds, the mean rounded to the std's second significant digit; "
            "std blank when n=1")


@dataclass
class Row:
    label: str
    overrides: dict[str, str]  # the differing overrides only
    runs: list[RunRecord]  # the runs that enter the statistics
    left_out: list[RunRecord]  # not done, listed apart (empty with --all)
    stats: dict[str, tuple[float, float | None, int]] = field(default_factory=dict)  # mean, std, n
    ci: dict[str, tuple[float, float] | None] = field(default_factory=dict)  # 95% CI of the mean (Student t)
    test: dict = field(default_factory=dict)  # vs the best on Table.test_metric: p, p_holm, verdict
    reach: tuple[float, int] | None = None  # median x of first reaching Table.reach (inf: never), never count

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
    test_metric: str | None = None  # the metric every group is tested on against the best
    best: str | None = None  # the best group's label on it
    reach: tuple[str, float, str] | None = None  # (metric, value, x unit) of the "time to reach" column


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
             include_all: bool = False, reach: tuple[str, float] | None = None, x: str = "step") -> Table:
    """A row per group: mean, sample std (ddof=1; None for n=1), n and 95% CI of every final metric
    over the runs that finished (all runs with include_all), sorted by `sort` (direction from its name
    unless given); every group tested against the best on `sort` (else the first metric); with
    `reach` = (metric, value), the median `x` at which each group's runs first reached the value."""
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
                row.ci[m] = st.mean_ci(a.tolist())
    table = Table(columns, metrics, rows)
    if reach is not None:
        _reach(table, *reach, x)
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
    _test(table, sort or next(iter(metrics), None), table.descending if sort else None)
    return table


def _test(table: Table, metric: str | None, higher: bool | None) -> None:
    """Every group against the best on `metric` (Welch's t-test, Holm-corrected; see stats.vs_best)."""
    if metric is None:
        return
    higher = higher_is_better(metric) if higher is None else higher
    samples = {row.label: [r.final[metric] for r in row.runs if metric in r.final] for row in table.rows}
    table.best, result = st.vs_best(samples, higher)
    table.test_metric = metric
    for row in table.rows:
        row.test = result.get(row.label, {})


def _reach(table: Table, metric: str, value: float, x: str) -> None:
    """Per group: the median over its runs of the first `x` at which `metric` reached `value` (at or
    below it where lower is better, at or above where higher is), a run that never did counting as
    infinity, and how many never did."""
    key = next((k for k in (metric, f"metrics/{metric}") for row in table.rows for r in row.runs if k in r.history), None)
    if key is None:
        raise CompareError(f"unknown metric '{metric}' for --reach; available: "
                           f"{', '.join(sorted({display_name(k) for row in table.rows for r in row.runs for k in r.history})) or 'none'}")
    up = higher_is_better(key)
    table.reach = (display_name(key), value, x)
    for row in table.rows:
        firsts = []
        for r in row.runs:
            steps = [s for s in sorted(r.history.get(key, {})) if (r.history[key][s] >= value if up else r.history[key][s] <= value)]
            firsts.append(x_of(r, steps[:1], x)[0] if steps else math.inf)
        row.reach = (float(np.median(firsts)), sum(map(math.isinf, firsts))) if firsts else None


STATUS = {"running": "running/unknown (no metrics.json)", "empty": "empty (no metrics, no stats)"}


def _count(runs: list[RunRecord]) -> str:
    return ", ".join(f"{n} {STATUS.get(s, s)}" for s, n in Counter(r.status for r in runs).items())


VERDICT = {"best": "best", "tied": "tied with best", "worse": "worse", "n<2": "n<2 (untested)"}


def _x(v: float, unit: str) -> str:
    return f"{v:.0f}" if unit != "seconds" else f"{v:.1f}"


def reach_cell(row: Row, unit: str) -> str:
    if row.reach is None:
        return ""
    median, never = row.reach
    text = "never" if math.isinf(median) else _x(median, unit)
    return text + (f" ({never} never)" if never else "")


def display(table: Table) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the console, Markdown and HTML tables: mean ± std rounded to the
    std's second significant digit; beside the tested metric its 95% CI, Holm-corrected p and mark."""
    head = [*(table.columns or ["overrides"]), "n"]
    t = table.test_metric
    for m in table.metrics:
        head.append(m)
        if m == t:
            head += [f"{m} 95% CI", "p (Holm)", "vs best"]
    if table.reach:
        head.insert(len(table.columns or [0]) + 1, reach_head(table))
    cells = []
    for row in table.rows:
        odd = [r for r in row.runs if r.status != "done"]
        n = f"{row.n} ({_count(odd)})" if odd else str(row.n)
        vals = [reach_cell(row, table.reach[2])] if table.reach else []
        for m in table.metrics:
            mean, std, k = row.stats.get(m, (math.nan, None, 0))
            vals.append("" if not k else st.fmt_pm(mean, std) + ("" if k == row.n else f" (n={k})"))
            if m == t:
                vals += [st.fmt_ci(row.ci.get(m), std), st.fmt_p(row.test.get("p_holm")),
                         VERDICT.get(row.test.get("verdict"), "")]
        cells.append([*(row.overrides.values() if table.columns else [row.label]), n, *vals])
    return head, cells


def reach_head(table: Table) -> str:
    m, v, unit = table.reach
    return f"{'steps' if unit == 'step' else unit} to {m} {'≥' if higher_is_better(m) else '≤'} {v:g}"


def caption(table: Table) -> str:
    text = STD_NOTE
    if table.sort:
        better = "higher" if higher_is_better(table.sort) else "lower"
        text += f"; sorted by {table.sort}, {'descending' if table.descending else 'ascending'} ({better} is better)"
    if table.test_metric:
        k = sum(1 for r in table.rows if r.test.get("p") is not None)
        text += (f"; {table.test_metric} 95% CI: Student t interval of the mean (n-1 degrees of freedom); vs best: "
                 f"Welch's t-test of each group against the best ({table.best}), p Holm-corrected over {k} "
                 f"comparison{'s' if k != 1 else ''}; \"tied with best\": not told apart at α = {st.ALPHA}")
    if table.reach:
        m, v, unit = table.reach
        text += (f"; {reach_head(table)}: median over seeds of the first evaluation at which {m} reached {v:g} "
                 f"(a run that never did counts as infinity: more than half never gives 'never')")
    return text


def notes(table: Table) -> list[str]:
    """A line per group whose runs did not all finish and were left out."""
    lines = []
    for row in table.rows:
        if row.left_out:
            errs = "; ".join(f"{r.path.name}: {r.error.splitlines()[0][:100]}" for r in row.left_out if r.error)
            lines.append(f"{row.label}: {_count(row.left_out)} left out" + (f" ({errs})" if errs else "") + " (--all includes them)")
    return lines


def _full(v) -> str:
    return "" if v is None or v == "" else repr(float(v))


def write_tables(table: Table, out_dir) -> list[Path]:
    """compare.csv (full precision, std blank for n=1) and compare.md (as printed) in out_dir."""
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / "compare.csv", out_dir / "compare.md"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*table.columns, "n", *(f"{m}_{s}" for m in table.metrics for s in ("mean", "std", "n", "ci_low", "ci_high")),
                    "test_metric", "p", "p_holm", "vs_best", *(["reach_" + table.reach[2], "reach_never"] if table.reach else []),
                    "status", "left_out", "runs"])
        for row in table.rows:
            stats = []
            for m in table.metrics:
                mean, std, k = row.stats.get(m, ("", None, 0))
                ci = row.ci.get(m) or ("", "")
                stats += [repr(mean) if k else "", "" if std is None else repr(std), k, *map(_full, ci)]
            test = [table.test_metric or "", _full(row.test.get("p")), _full(row.test.get("p_holm")), row.test.get("verdict", "")]
            reach = [_full(row.reach[0]), row.reach[1]] if table.reach and row.reach else ["", ""] if table.reach else []
            w.writerow([*row.overrides.values(), row.n, *stats, *test, *reach, _count(row.runs), _count(row.left_out),
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
