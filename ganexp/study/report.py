"""`ganexp compare --report`: the study as one self-contained HTML page (images embedded as data
URIs, no script, no external file) that can be attached to a message: the table with its
significance marks, the curves, the last sample grid of one seed per group, each group's overrides
and the study's provenance (commit, versions, device, command)."""
from __future__ import annotations

import base64
import html
import io
import json
import re
import sys
from collections import Counter
from pathlib import Path

from ganexp.study.plot import figure
from ganexp.study.runs import RunRecord
from ganexp.study.table import Table, _ignored, caption, display, notes

CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:14px;margin:8px 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;white-space:nowrap}
th{background:#f3f3f3}tr.best td{background:#e6f4ea}tr.tied td{background:#f6f9e6}tr.worse td{color:#666}
.mark{font-weight:600}.caption{font-size:12px;color:#555;max-width:1100px}
.grids{display:flex;flex-wrap:wrap;gap:16px}.grids figure{margin:0;text-align:center;font-size:13px}
.grids img{width:260px;image-rendering:pixelated;border:1px solid #ddd}.curves img{max-width:700px}
code,pre{font-size:12px;background:#f6f6f6}pre{padding:8px;white-space:pre-wrap}"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _step_of(p: Path) -> int:
    m = re.search(r"(\d+)\.png$", p.name)
    return int(m.group(1)) if m else -1


def last_images(run: RunRecord) -> list[Path]:
    """The run's last sample grid (or 2D scatter), and its last KDE plot when it has one."""
    out = []
    for pattern in ("step_*.png", "kde_*.png"):
        found = sorted((run.path / "samples").glob(pattern), key=_step_of)
        out += found[-1:]
    return out


def _provenance(runs: list[RunRecord]) -> list[dict]:
    recs = []
    for r in runs:
        try:
            recs.append(json.loads((r.path / "provenance.json").read_text())["runs"][0])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            pass
    return recs


def _e(x) -> str:
    return html.escape(str(x))


def _table(table: Table) -> str:
    head, cells = display(table)
    out = ["<table id='results'><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    mark = head.index("vs best") if "vs best" in head else -1
    for row, c in zip(table.rows, cells):
        out.append(f"<tr class='{_e(row.test.get('verdict', ''))}'>")
        out += [f"<td{' class=mark' if i == mark else ''}>{_e(v)}</td>" for i, v in enumerate(c)]
        out.append("</tr>")
    out.append("</tbody></table>")
    out.append(f"<p class='caption'>{_e(caption(table))}.</p>")
    out += [f"<p class='caption'>left out: {_e(n)}</p>" for n in notes(table)]
    return "".join(out)


def _curves(table: Table, metrics: list[str], band: str, x: str) -> str:
    out = []
    for m in metrics:
        fig, name = figure(table, m, band, x)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        out.append(f"<img alt='{_e(name)} against {_e(x)}' src='{data_uri(buf.getvalue())}'>")
    return "<div class='curves'>" + "".join(out) + "</div>"


def _grids(table: Table) -> str:
    out = ["<div class='grids'>"]
    for row in table.rows:
        runs = sorted(row.runs or row.left_out, key=lambda r: r.path.name)
        shown = next((r for r in runs if last_images(r)), None)
        if shown is None:
            out.append(f"<figure class='group'><figcaption>{_e(row.label)}: no samples</figcaption></figure>")
            continue
        imgs = "".join(f"<img alt='{_e(p.name)}' src='{data_uri(p.read_bytes())}'>" for p in last_images(shown))
        step = max(_step_of(p) for p in last_images(shown))
        out.append(f"<figure class='group'>{imgs}<figcaption>{_e(row.label)}<br><code>{_e(shown.path.name)}</code>, "
                   f"step {step}</figcaption></figure>")
    return "".join(out) + "</div>"


def _overrides(table: Table) -> str:
    out = ["<table id='overrides'><tr><th>group</th><th>overrides (less seed)</th><th>seeds</th><th>runs</th></tr>"]
    for row in table.rows:
        runs = row.runs + row.left_out
        common = {k: v for k, v in (runs[0].overrides if runs else {}).items() if not _ignored(k)}
        seeds = ", ".join(sorted({r.overrides.get("seed", "(default)") for r in runs}))
        out.append(f"<tr><td>{_e(row.label)}</td><td><code>{_e(' '.join(f'{k}={v}' for k, v in common.items()))}</code>"
                   f"</td><td>{_e(seeds)}</td><td>{len(runs)}</td></tr>")
    return "".join(out) + "</table>"


def _count(values) -> str:
    return ", ".join(f"{v} ({n} runs)" for v, n in Counter(values).most_common()) or "unknown"


def _provenance_html(table: Table, argv: list[str]) -> str:
    recs = _provenance([r for row in table.rows for r in row.runs + row.left_out])
    git = [f"{(p.get('git') or {}).get('commit', '?')[:12]}{' (dirty)' if (p.get('git') or {}).get('dirty') else ''}"
           for p in recs]
    versions = recs[0].get("versions", {}) if recs else {}
    items = [("commit", _count(git)), ("versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "unknown"),
             ("python", _count(p.get("python", "?") for p in recs)),
             ("device", _count(f"{(p.get('device') or {}).get('type', '?')}: {(p.get('device') or {}).get('name', '?')}"
                               for p in recs)),
             ("host", _count(p.get("host", "?") for p in recs)),
             ("first run's command", recs[0].get("command", "?") if recs else "unknown"),
             ("this report", " ".join(["ganexp compare", *argv]))]
    return "<table id='provenance'>" + "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>" for k, v in items) + "</table>"


def write_report(table: Table, path, metrics: list[str], band: str = "ci", x: str = "step", argv: list[str] | None = None) -> Path:
    """One HTML file at `path` (see the module's docstring); `metrics` are the curves to draw."""
    argv = sys.argv[2:] if argv is None else argv
    n = sum(r.n for r in table.rows)
    title = f"Study: {n} runs in {len(table.rows)} groups"
    body = [f"<h1>{_e(title)}</h1>", "<h2>Results</h2>", _table(table)]
    if metrics:
        body += ["<h2>Curves</h2>", _curves(table, metrics, band, x)]
    body += ["<h2>Samples: the last grid of one seed per group</h2>", _grids(table),
             "<h2>Groups</h2>", _overrides(table), "<h2>Provenance</h2>", _provenance_html(table, argv)]
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
