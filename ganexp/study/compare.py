"""`ganexp compare PATH...`: one table for a study, a row per group of runs that differ only in seed.

Reads what every run folder leaves behind: `.hydra/overrides.yaml` (the group), `metrics.json`
(final values and status), `stats.jsonl` (the history, for `--plot`, `--reach` and `--x`) and, for
`--report`, the last sample grids and `provenance.json`. Plain argparse, no Hydra, no torch, no
scipy; the table and plot modules load after the arguments parse, so `--help` answers at once.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ganexp.errors import GanexpError
from ganexp.study.runs import X_UNITS, CompareError, find_runs, is_run_dir, load_run


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        raise CompareError(f"{message} (ganexp compare --help)")


def _reach(text: str) -> tuple[str, float]:
    metric, _, value = text.partition("=")
    try:
        return metric.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not METRIC=VALUE (e.g. fid_clf=5)") from None


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="ganexp compare", description="A table of runs grouped by their overrides less seed: "
                "mean ± std, n and the 95%% CI of the mean of every final metric, every group tested against the best "
                "(Welch's t, Holm-corrected; on --sort's metric, else the first); writes compare.csv and compare.md.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="sweep folders or run folders")
    p.add_argument("--sort", metavar="METRIC", help="sort the groups by this metric (best first) and test them against the best on it")
    way = p.add_mutually_exclusive_group()
    way.add_argument("--asc", dest="descending", action="store_false", default=None, help="ascending, whatever the metric")
    way.add_argument("--desc", dest="descending", action="store_true", help="descending, whatever the metric")
    p.add_argument("--all", action="store_true", help="include runs that are not done (their last values)")
    p.add_argument("--plot", metavar="METRIC", action="append", default=[], help="METRIC against --x to compare_<METRIC>.png")
    p.add_argument("--band", choices=("ci", "std", "minmax"), default="ci",
                   help="the band over seeds in plots: 95%% CI of the mean (default), ± std clipped to the metric's range, min-max")
    p.add_argument("--x", choices=X_UNITS, default="step", help="plot and --reach against training steps (default), "
                   "real images seen by D, or training seconds")
    p.add_argument("--reach", metavar="METRIC=VALUE", type=_reach, help="a column: the median over seeds of the first --x "
                   "at which METRIC reached VALUE, and how many runs never did")
    p.add_argument("--report", action="store_true", help="also write compare.html: one self-contained page with the "
                   "table, curves, the last sample grid per group, overrides and provenance")
    p.add_argument("--out", metavar="DIR", help="where to write (default: the first PATH if a sweep folder, else .)")
    try:
        args = p.parse_args(argv)
    except GanexpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text  # override values like [ema,r1] are not markup

    from ganexp.study.plot import plot, plot_key
    from ganexp.study.table import caption, display, group_runs, notes, tabulate, write_tables

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 1000  # piped or logged: one line per row rather than 80-column wrapping
    try:
        table = tabulate(group_runs([load_run(r) for r in find_runs(args.paths)]), args.sort, args.descending, args.all,
                         args.reach, args.x)
        for m in args.plot:  # check every name before writing anything
            plot_key(table, m)
        first = Path(args.paths[0])
        out = Path(args.out) if args.out else first if not is_run_dir(first) else Path.cwd()
        out.mkdir(parents=True, exist_ok=True)
        written = write_tables(table, out) + [plot(table, m, out, args.band, args.x) for m in args.plot]
        if args.report:
            from ganexp.study.report import write_report

            curves = args.plot or [m for m in [table.test_metric] if m and _has_history(table, m)]
            written.append(write_report(table, out / "compare.html", curves, args.band, args.x,
                                        sys.argv[2:] if argv is None else argv))
    except GanexpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    head, cells = display(table)
    rich = RichTable(caption=caption(table), title=f"{sum(r.n for r in table.rows)} runs in {len(cells)} groups")
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


def _has_history(table, metric: str) -> bool:
    return any(k in r.history for row in table.rows for r in row.runs for k in (metric, f"metrics/{metric}"))
