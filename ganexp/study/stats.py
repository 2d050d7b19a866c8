"""What the seeds of a study can tell apart: the 95% confidence interval of a group's mean (Student
t), Welch's two-sample t-test of each group against the best, Holm's correction over those tests,
and numbers rounded to the precision their spread supports.

Pure Python (math only), so ``ganexp compare`` starts without scipy; tests/test_study_stats.py
checks every function against ``scipy.stats``.
"""
from __future__ import annotations

import math
from statistics import fmean, stdev

ALPHA = 0.05


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail probability P(|T| >= |t|) of Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_ppf(p: float, df: float) -> float:
    """The quantile of Student's t (p in (0.5, 1)), by bisection on the tail probability."""
    target = 2.0 * (1.0 - p)  # the two-sided tail beyond the quantile
    lo, hi = 0.0, 1.0
    while t_sf2(hi, df) > target:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_sf2(mid, df) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return (lo + hi) / 2.0


def mean_ci(values, level: float = 0.95) -> tuple[float, float] | None:
    """The Student-t confidence interval of the mean: mean ± t(level, n-1) · s/√n; None for n < 2."""
    n = len(values)
    if n < 2:
        return None
    m, half = fmean(values), t_ppf(0.5 + level / 2.0, n - 1) * stdev(values) / math.sqrt(n)
    return m - half, m + half


def welch(a, b) -> tuple[float, float, float]:
    """Welch's unequal-variance t-test of two samples: (t, df, two-sided p). Two samples without
    spread give p = 1 when their means are equal and p = 0 when they differ (t is infinite)."""
    na, nb = len(a), len(b)
    va, vb = stdev(a) ** 2 / na, stdev(b) ** 2 / nb
    diff = fmean(a) - fmean(b)
    se2 = va + vb
    if se2 == 0.0:
        return (0.0 if diff == 0 else math.copysign(math.inf, diff)), float(na + nb - 2), (1.0 if diff == 0 else 0.0)
    t = diff / math.sqrt(se2)
    df = se2 ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1)) if va or vb else float(na + nb - 2)
    return t, df, t_sf2(t, df)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest p times (m - i + 1),
    never below the adjusted p before it, at most 1."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def vs_best(samples: dict[str, list[float]], higher: bool, alpha: float = ALPHA) -> tuple[str | None, dict[str, dict]]:
    """Every group against the best (by mean, in the metric's direction), by Welch's t-test with
    Holm's correction over the comparisons made. Returns the best group and, per group,
    {"p", "p_holm", "verdict"}: verdict is "best", "tied" (not significantly different from the
    best at ``alpha``), "worse", or "n<2" (too few runs to test; the best needs two as well)."""
    with_values = {g: v for g, v in samples.items() if v}
    if not with_values:
        return None, {}
    best = (max if higher else min)(with_values, key=lambda g: fmean(with_values[g]))
    out: dict[str, dict] = {best: {"p": None, "p_holm": None, "verdict": "best"}}
    tested = [g for g in with_values if g != best and len(with_values[g]) > 1 and len(with_values[best]) > 1]
    for g in with_values:
        if g != best and g not in tested:
            out[g] = {"p": None, "p_holm": None, "verdict": "n<2"}
    p = [welch(with_values[best], with_values[g])[2] for g in tested]
    for g, raw, adj in zip(tested, p, holm(p)):
        out[g] = {"p": raw, "p_holm": adj, "verdict": "tied" if adj >= alpha else "worse"}
    return best, out


def _decimals(std: float) -> int:
    """Decimal places that keep two significant digits of ``std`` (negative: round to tens, ...)."""
    return 1 - math.floor(math.log10(abs(std)))


def rounded(x: float, decimals: int) -> str:
    x = round(x, decimals)
    return f"{x:.{decimals}f}" if decimals > 0 else f"{x:.0f}"


def fmt_pm(mean: float, std: float | None) -> str:
    """``mean ± std`` with the std to two significant digits and the mean to the same decimal place
    (7.40 ± 0.55, 1234 ± 57); without a spread (n=1 or std 0) the mean to four significant digits."""
    if std is None or std == 0 or not math.isfinite(std) or not math.isfinite(mean):
        return f"{mean:.4g}" + ("" if std is None else " ± 0")
    d = _decimals(std)
    return f"{rounded(mean, d)} ± {rounded(std, d)}"


def fmt_ci(ci: tuple[float, float] | None, std: float | None) -> str:
    """``[lo, hi]`` at the decimal place of the mean beside it."""
    if ci is None:
        return ""
    if not std or not math.isfinite(std):
        return f"[{ci[0]:.4g}, {ci[1]:.4g}]"
    d = _decimals(std)
    return f"[{rounded(ci[0], d)}, {rounded(ci[1], d)}]"


def fmt_p(p: float | None) -> str:
    return "" if p is None else "<0.001" if p < 0.001 else f"{p:.3f}" if p < 0.1 else f"{p:.2f}"
