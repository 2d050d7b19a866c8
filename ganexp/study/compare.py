"""`ganexp compare PATH...`: one table for a study, a row per group of runs that differ only in seed.

Reads what every run folder leaves behind: `.hydra/overrides.yaml` (the group), `metrics.json`
(final values and status) and `stats.jsonl` (the history, for `--plot`). Plain argparse, no Hydra,
no torch.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ganexp.errors import GanexpError
from ganexp.study.plot import plot, plot_key
from ganexp.study.runs import CompareError, find_runs, is_run_dir, load_run
from ganexp.study.table import caption, display, group_runs, notes, tabulate, write_tables


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
        table = tabulate(group_runs([load_run(r) for r in find_runs(args.paths)]), args.sort, args.descending, args.all)
        for m in args.plot:  # check every name before writing anything
            plot_key(table, m)
        first = Path(args.paths[0])
        out = Path(args.out) if args.out else first if not is_run_dir(first) else Path.cwd()
        out.mkdir(parents=True, exist_ok=True)
        written = write_tables(table, out) + [plot(table, m, out, args.band) for m in args.plot]
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
