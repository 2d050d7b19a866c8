"""What `ganexp compare` says the seeds can tell apart: every statistic checked against scipy.stats
on fixed numbers (scipy is a test-only dependency; ganexp's own stats are pure Python)."""
import math
import statistics

import pytest

from ganexp.study import compare, runs as study_runs, stats as st, table as study_table
from tests.conftest import MODES, ring_study

scipy_stats = pytest.importorskip("scipy.stats")

#: A ring study's final modes over 5 seeds (the docs' 7.4 ± 0.55 against 6.8 ± 0.84).

@pytest.mark.parametrize("df", [1, 2, 4, 6.897, 30, 250])
def test_student_t_quantile_and_tail_match_scipy(df):
    for p in (0.6, 0.9, 0.975, 0.995):
        assert st.t_ppf(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-10)
    for t in (0.0, 0.3, 1.34, 2.5, 8.0):
        assert st.t_sf2(t, df) == pytest.approx(2 * scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-300)


def test_confidence_interval_of_the_mean_is_scipys_student_t_interval():
    for values in (MODES["gan"], MODES["lsgan"], [31.2, 29.8], [0.019, 0.05, 0.003, 0.011]):
        lo, hi = st.mean_ci(values)
        want = scipy_stats.t.interval(0.95, len(values) - 1, loc=statistics.mean(values), scale=scipy_stats.sem(values))
        assert (lo, hi) == pytest.approx(want, rel=1e-10)
    assert st.mean_ci([3.0]) is None


def test_welch_matches_scipys_unequal_variance_t_test():
    for a, b in ((MODES["gan"], MODES["hinge"]), (MODES["gan"], MODES["lsgan"]), ([1.0, 2.0], [10.0, 11.0, 30.0])):
        t, df, p = st.welch(a, b)
        ref = scipy_stats.ttest_ind(a, b, equal_var=False)
        assert (t, df, p) == pytest.approx((ref.statistic, ref.df, ref.pvalue), rel=1e-10)
    assert st.welch([8, 8, 8], [8, 8, 8])[2] == 1.0  # no spread, same mean: nothing to tell apart
    assert st.welch([8, 8, 8], [7, 7, 7])[2] == 0.0  # no spread, different means: told apart


def test_holm_step_down_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.06, 0.04*1) = 0.06; back in input order
    assert st.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert st.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert st.holm([]) == []


def test_vs_best_marks_a_group_the_best_does_not_significantly_beat_as_tied():
    best, res = st.vs_best(MODES, higher=True)
    assert best == "gan" and res["gan"]["verdict"] == "best"
    p_hinge = scipy_stats.ttest_ind(MODES["gan"], MODES["hinge"], equal_var=False).pvalue
    p_lsgan = scipy_stats.ttest_ind(MODES["gan"], MODES["lsgan"], equal_var=False).pvalue
    assert p_lsgan < p_hinge
    holm_lsgan = 2 * p_lsgan  # the smaller p times the 2 comparisons
    holm_hinge = max(holm_lsgan, p_hinge)
    assert res["hinge"]["p"] == pytest.approx(p_hinge, rel=1e-10)
    assert res["hinge"]["p_holm"] == pytest.approx(holm_hinge, rel=1e-10) and holm_hinge > 0.2
    assert res["hinge"]["verdict"] == "tied"  # 7.4 against 6.8 over 5 seeds: not told apart
    assert res["lsgan"]["p_holm"] == pytest.approx(holm_lsgan, rel=1e-10) and holm_lsgan < 0.05
    assert res["lsgan"]["verdict"] == "worse"
    # lower is better: the smallest mean is the best; a group of one run cannot be tested
    best, res = st.vs_best({"a": [3.0, 3.1], "b": [1.0, 1.2], "c": [9.0]}, higher=False)
    assert best == "b" and res["c"]["verdict"] == "n<2" and res["a"]["p_holm"] == pytest.approx(
        scipy_stats.ttest_ind([1.0, 1.2], [3.0, 3.1], equal_var=False).pvalue, rel=1e-10)


@pytest.mark.parametrize("mean, std, text", [
    (7.4, 0.5477225575, "7.40 ± 0.55"), (6.8, 0.8366600265, "6.80 ± 0.84"), (1234.6, 57.3, "1235 ± 57"),
    (45678.0, 1234.0, "45700 ± 1200"), (0.01992, 0.01495, "0.020 ± 0.015"), (5.0, 1.414, "5.0 ± 1.4"),
    (5.0, None, "5"), (1.1, 0.0, "1.1 ± 0"),
])
def test_numbers_are_rounded_to_the_std_second_significant_digit(mean, std, text):
    assert st.fmt_pm(mean, std) == text


def test_compare_prints_the_ci_and_the_tied_with_best_mark(tmp_path, capsys):
    root = ring_study(tmp_path / "ring")
    assert compare.main([str(root), "--sort", "modes"]) == 0
    out = capsys.readouterr().out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 5}
    lo, hi = scipy_stats.t.interval(0.95, 4, loc=7.4, scale=scipy_stats.sem(MODES["gan"]))
    assert f"[{lo:.2f}, {hi:.2f}]" in lines["gan"] and "7.40 ± 0.55" in lines["gan"] and " best " in lines["gan"]
    assert "6.80 ± 0.84" in lines["hinge"] and "tied with best" in lines["hinge"]
    assert "worse" in lines["lsgan"] and "tied" not in lines["lsgan"]
    assert "Welch's t-test" in out and "Holm-corrected over 2 comparisons" in out
    rows = {r["loss"]: r for r in __import__("csv").DictReader((root / "compare.csv").open())}
    assert float(rows["hinge"]["modes_ci_low"]) == pytest.approx(
        scipy_stats.t.interval(0.95, 4, loc=6.8, scale=scipy_stats.sem(MODES["hinge"]))[0], rel=1e-12)
    assert rows["hinge"]["vs_best"] == "tied" and rows["lsgan"]["vs_best"] == "worse" and rows["gan"]["p"] == ""


def test_reach_is_the_median_first_time_over_seeds_with_the_count_that_never_did(tmp_path):
    root = ring_study(tmp_path / "ring")
    load = lambda **kw: study_table.tabulate(study_table.group_runs(  # noqa: E731
        [study_runs.load_run(p) for p in study_runs.find_runs([root])]), sort="modes", **kw)
    table = load(reach=("modes", 7.0))
    by = {r.label: r.reach for r in table.rows}
    # gan: 7,8,7,7,8 at step 3000, and 8-1=7 at step 1000 for seeds 1 and 4 -> firsts 3000,1000,3000,3000,1000
    assert by["loss=gan"] == (3000.0, 0)
    # hinge: 6,7,7,8,6 at step 3000 and 5,6,6,7,5 at step 1000 -> firsts never,3000,3000,1000,never
    assert by["loss=hinge"] == (3000.0, 2)
    table = load(reach=("modes", 6.0), x="seconds")
    # lsgan 5,3,6,7,4: seed 2 reaches 6 at step 3000 (32 s), seed 3 at step 1000 (13 s); 3 never -> median inf
    assert {r.label: r.reach for r in table.rows}["loss=lsgan"] == (math.inf, 3)
    # hinge 6,7,7,8,6: every seed reaches 6 by step 3000; seeds 1,2,3 already at step 1000 (11, 12, 13 s)
    assert {r.label: r.reach for r in table.rows}["loss=hinge"] == (13.0, 0)
    head, cells = study_table.display(table)
    assert "seconds to modes ≥ 6" in head
    with pytest.raises(study_runs.CompareError, match="unknown metric 'nope' for --reach"):
        load(reach=("nope", 1.0))
