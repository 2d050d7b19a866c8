"""What a run says about its score, in one line: each evaluation (``eval @ 1500: fid_clf 31.2
(floor 1.09)  is_clf 6.02 (real 9.28)``), the run's last line (final metrics with their floors, the
best evaluation, wall time, folder) and ``ganexp eval``'s. No torch: the sweep summary reads it too.

A metric's reference is the value logged beside it: ``<name>_baseline`` (the real-vs-real floor of
FID and KID at the score's own sizes), ``<name>_baseline_n<m>`` (the floor at m samples a side) and
``<name>_real`` (IS of the real data)."""
from __future__ import annotations

import math
import re
from pathlib import Path

from ganexp.rundir.layout import STATS_JSONL, read_stats

_REF = re.compile(r"^(?P<name>.+?)_(?:baseline(?:_n(?P<n>\d+))?|(?P<real>real))$")


def num(v: float) -> str:
    """Three significant digits, whole numbers as they are (7 modes, 26000 samples)."""
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return str(v)
    if float(v).is_integer() and abs(v) < 1e7:
        return str(int(v))
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def pairs(values: dict[str, float]) -> list[str]:
    """``name value (floor x)`` / ``(real x)`` for every metric with a reference; the rest plain."""
    refs, out = {}, []
    for k, v in values.items():
        m = _REF.match(k)
        if m and m.group("name") in values:
            kind = "real" if m.group("real") else "floor" + (f" at n={m.group('n')}" if m.group("n") else "")
            refs[m.group("name")] = f"{kind} {num(v)}"
    for k, v in values.items():
        m = _REF.match(k)
        if m and m.group("name") in values:
            continue
        out.append(f"{k} {num(v)}" + (f" ({refs[k]})" if k in refs else ""))
    return out


def eval_line(step: int, values: dict[str, float]) -> str:
    return f"eval @ {step}: " + ("  ".join(pairs(values)) or "no values")


def duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{seconds:.1f} s" if seconds < 60 else f"{s // 60} min {s % 60:02d} s" if s < 3600 else f"{s // 3600} h {s % 3600 // 60:02d} min"


def best_eval(run_dir: Path, metric: str, mode: str) -> tuple[float, int] | None:
    """The best logged value of ``metrics/<metric>`` (min or max) and its step, from stats.jsonl."""
    h = read_stats(Path(run_dir) / STATS_JSONL).get(f"metrics/{metric}", {})
    if not h:
        return None
    step = (min if mode == "min" else max)(h, key=lambda s: (h[s], s if mode == "min" else -s))
    return h[step], step


def run_line(final: dict, seconds: float, run_dir: Path, best: tuple[str, str] | None = None) -> str:
    """The run's last line: ``done @ <step> in <time>: <metrics with floors>; best <metric> <value> @
    <step>; <folder>  (tensorboard --logdir <parent>)``."""
    metrics = {k[len("metrics/"):]: v for k, v in final.items() if k.startswith("metrics/") and isinstance(v, (int, float))}
    text = f"done @ {final.get('step', '?')} in {duration(seconds)}: " + ("  ".join(pairs(metrics)) or "no metrics")
    if best:
        b = best_eval(run_dir, *best)
        if b is not None:
            text += f"; best {best[0]} {num(b[0])} @ {b[1]} (ckpt/best.pt)"
    return f"{text}; {run_dir}  (tensorboard --logdir {Path(run_dir).parent})"


def eval_summary(values: dict[str, float], step: int, seconds: float, out: Path) -> str:
    """``ganexp eval``'s last line."""
    return f"eval @ {step} in {duration(seconds)}: " + ("  ".join(pairs(values)) or "no metrics") + f"; wrote {out}"
