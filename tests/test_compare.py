"""`ganexp compare` over synthetic run folders written in the engine's format (overrides.yaml,
metrics.json, stats.jsonl); every expected number is computed here from the stats the test wrote."""
import csv
import random
import statistics
import sys

import numpy as np
import pytest
from PIL import Image

from ganexp.study import compare, plot as study_plot, runs as study_runs, table as study_table
from tests.conftest import write_run

STEPS = (10, 20, 30, 40)
LEVEL = {"gan": (30.0, 5.0), "lsgan": (10.0, 3.0)}  # (fid_clf, is_clf): lsgan better by FID, gan by IS


def stats_lines(loss: str, seed: int):
    """A log line per step and an eval line at steps 20 and 40, seeded random values around the group's level."""
    rng, (fid, is_) = random.Random(f"{loss}{seed}"), LEVEL[loss]
    lines = []
    for step in STEPS:
        lines.append({"step": step, "time": step / 10, "loss/d": rng.uniform(0.5, 1.5), "loss/g": rng.uniform(0.5, 2),
                      "grad_norm/g": rng.uniform(0, 1)})
        if step % 20 == 0:
            lines.append({"step": step, "time": step / 10 + 0.5, "metrics/fid_clf": fid + rng.gauss(0, 2) - step / 10,
                          "metrics/is_clf": is_ + rng.gauss(0, 0.3), "metrics/fid_clf_baseline_n2500": 1.1})
    return lines


@pytest.fixture
def sweep(tmp_path):
    """A sweep folder: loss=gan,lsgan x seed=0,1 (train.steps common to all), one failed gan run,
    multirun.yaml and a folder that is not a run."""
    root = tmp_path / "sweeps" / "2024-01-01_00-00-00"
    runs, n = {}, 0
    for loss in ("gan", "lsgan"):
        for seed in (0, 1):
            lines = stats_lines(loss, seed)
            write_run(root / f"{n}_loss={loss},seed={seed}",
                      [f"loss={loss}", f"seed={seed}", "train.steps=40", "device=cpu", "hydra.job.chdir=false"], lines)
            runs[(loss, seed)], n = lines, n + 1
    bad = stats_lines("gan", 2)[:2]  # failed before its first evaluation
    write_run(root / f"{n}_loss=gan,seed=2", ["loss=gan", "seed=2", "train.steps=40"], bad, status="failed",
              error="RuntimeError: out of memory")
    (root / "multirun.yaml").write_text("hydra: {}\n")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run\n")
    return root, runs


def final_values(lines, key):
    return [r[key] for r in lines if key in r][-1]


def expected(runs, loss, key):
    vals = [final_values(runs[(loss, s)], key) for s in (0, 1)]
    return statistics.mean(vals), statistics.stdev(vals)


def load(root, **kw):
    return study_table.tabulate(study_table.group_runs([study_runs.load_run(p) for p in study_runs.find_runs([root])]), **kw)


def test_rows_hold_mean_std_and_n_per_group_sorted_by_the_metric(sweep):
    root, runs = sweep
    table = load(root, sort="fid_clf")
    assert [r.label for r in table.rows] == ["loss=lsgan", "loss=gan"]  # found gan first; lsgan's FID is lower
    assert table.columns == ["loss"]  # seed, device, hydra.* and the common train.steps are not columns
    assert table.metrics[0] == "fid_clf" and {"is_clf", "loss/d", "loss/g", "fid_clf_baseline_n2500"} <= set(table.metrics)
    assert "grad_norm/g" not in table.metrics
    for row, loss in zip(table.rows, ("lsgan", "gan")):
        assert row.n == 2 and [r.status for r in row.runs] == ["done", "done"]
        for m, key in (("fid_clf", "metrics/fid_clf"), ("is_clf", "metrics/is_clf"), ("loss/d", "loss/d")):
            mean, std, n = row.stats[m]
            assert (mean, std, n) == (pytest.approx(expected(runs, loss, key)[0], rel=1e-12),
                                      pytest.approx(expected(runs, loss, key)[1], rel=1e-12), 2)
    gan = table.rows[1]
    assert [r.status for r in gan.left_out] == ["failed"] and gan.left_out[0].path.name == "4_loss=gan,seed=2"
    # IS: higher is better, so descending unless told otherwise
    assert [r.label for r in load(root, sort="is_clf").rows] == ["loss=gan", "loss=lsgan"]
    assert [r.label for r in load(root, sort="is_clf", descending=False).rows] == ["loss=lsgan", "loss=gan"]
    # --all takes the failed run's last values in
    everything = load(root, sort="fid_clf", include_all=True).rows[1]
    assert everything.n == 3 and everything.stats["loss/d"][2] == 3 and everything.stats["fid_clf"][2] == 2


def test_higher_is_better_follows_the_metric_name():
    up = ["is_clf", "is", "pr_clf_precision", "pr_clf_recall", "modes", "modes_hq_percent", "stacked_modes", "accuracy"]
    down = ["fid_clf", "kid", "modes_reverse_kl", "stacked_modes_kl", "loss/d", "fid_clf_baseline_n2500"]
    assert [study_table.higher_is_better(m) for m in up + down] == [True] * len(up) + [False] * len(down)


def test_tables_and_plot_are_written_with_full_precision_and_the_precision_the_std_supports(sweep):
    root, runs = sweep
    table = load(root, sort="fid_clf")
    csv_path, md_path = study_table.write_tables(table, root)
    assert (csv_path, md_path) == (root / "compare.csv", root / "compare.md")
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["loss"] for r in rows] == ["lsgan", "gan"] and "seed" not in rows[0] and "train.steps" not in rows[0]
    for r in rows:
        mean, std = expected(runs, r["loss"], "metrics/fid_clf")
        assert float(r["fid_clf_mean"]) == pytest.approx(mean, rel=1e-12)
        assert float(r["fid_clf_std"]) == pytest.approx(std, rel=1e-12) and r["fid_clf_n"] == "2" and r["n"] == "2"
    assert rows[1]["left_out"] == "1 failed" and rows[0]["left_out"] == ""
    md = md_path.read_text().splitlines()
    assert md[0].startswith("| loss | n | fid_clf |")
    mean, std = expected(runs, "lsgan", "metrics/fid_clf")
    assert 1 <= std < 10  # two significant digits of the std: one decimal, for the mean too
    assert md[2].startswith(f"| lsgan | 2 | {mean:.1f} ± {std:.1f} |")
    assert any("sample std (ddof=1)" in line and "sorted by fid_clf, ascending" in line for line in md)
    assert "- loss=gan: 1 failed left out (4_loss=gan,seed=2: RuntimeError: out of memory) (--all includes them)" in md

    png = study_plot.plot(table, "fid_clf", root)
    assert png == root / "compare_fid_clf.png"
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        assert im.size == (700, 450)
        pixels = {tuple(p[:3]) for p in np.asarray(im.convert("RGB")).reshape(-1, 3)}
    assert (0x1F, 0x77, 0xB4) in pixels and (0xFF, 0x7F, 0x0E) in pixels  # a line per group, in the first two colours


def test_curves_average_each_step_over_seeds(sweep):
    root, runs = sweep
    table = load(root, sort="fid_clf")
    bands = study_plot.curves(table, "fid_clf", band="std")
    steps, mean, lo, hi = bands["loss=lsgan (n=2)"]
    assert steps == [20, 40]
    for i, step in enumerate(steps):
        vals = [next(r["metrics/fid_clf"] for r in runs[("lsgan", s)] if r["step"] == step and "metrics/fid_clf" in r)
                for s in (0, 1)]
        sd = statistics.stdev(vals)
        assert (mean[i], lo[i], hi[i]) == pytest.approx((statistics.mean(vals), statistics.mean(vals) - sd,
                                                         statistics.mean(vals) + sd), rel=1e-12)
    _, _, lo, hi = study_plot.curves(table, "loss/d", band="minmax")["loss=gan (n=2)"]
    first = [runs[("gan", s)][0]["loss/d"] for s in (0, 1)]
    assert (lo[0], hi[0]) == (min(first), max(first))


def test_stats_keep_the_last_value_per_step_and_skip_a_torn_line(tmp_path):
    """A run resumed from step 20 re-logs steps 30 and 40; a crash left half a line; no metrics.json yet."""
    first = [{"step": 10, "loss/d": 1.0, "loss/g": 2.0}, {"step": 20, "loss/d": 1.1, "metrics/fid_clf": 50.0},
             {"step": 30, "loss/d": 1.2, "loss/g": 2.2}]
    again = [{"step": 30, "loss/d": 0.7}, {"step": 40, "loss/d": 0.6, "loss/g": 1.6}]
    run = tmp_path / "run"
    write_run(run, ["loss=lsgan", "seed=3"], first + again, status=None, tail='{"step": 50, "loss/d": 0.')
    r = study_runs.load_run(run)
    assert r.history["loss/d"] == {10: 1.0, 20: 1.1, 30: 0.7, 40: 0.6}
    assert r.history["loss/g"] == {10: 2.0, 30: 2.2, 40: 1.6}  # step 30's loss/g only the first line had
    assert r.status == "running" and r.final == {"loss/d": 0.6, "loss/g": 1.6, "fid_clf": 50.0}
    assert r.overrides == {"loss": "lsgan", "seed": "3"}
    table = study_table.tabulate(study_table.group_runs([r]))
    assert table.rows[0].n == 0 and study_table.notes(table) == ["loss=lsgan: 1 running/unknown (no metrics.json) left out (--all includes them)"]
    assert study_table.tabulate(study_table.group_runs([r]), include_all=True).rows[0].stats["loss/d"] == (0.6, None, 1)


def test_groups_ignore_prefixes_spacing_and_keys_that_do_not_change_the_experiment(tmp_path):
    line = [{"step": 1, "loss/d": 1.0}]
    write_run(tmp_path / "a", ["+tricks=[ema, r1]", "seed=0", "out_dir=x", "hydra/launcher=joblib"], line)
    write_run(tmp_path / "b", ["tricks=[ema,r1]", "seed=1", "resume=x", "overwrite=true"], line)
    write_run(tmp_path / "c", ["tricks=[r1,ema]", "seed=0", "optimizer.d.lr=1e-4"], line)
    table = study_table.tabulate(study_table.group_runs([study_runs.load_run(tmp_path / d) for d in "abc"]))
    assert [(r.label, r.n) for r in table.rows] == [
        ("tricks=[ema,r1] optimizer.d.lr=(default)", 2), ("tricks=[r1,ema] optimizer.d.lr=1e-4", 1)]
    assert table.rows[1].stats["loss/d"] == (1.0, None, 1)


def test_main_writes_into_the_sweep_folder_and_prints_the_paths(sweep, capsys):
    root, _ = sweep
    assert compare.main([str(root), "--sort", "fid_clf", "--plot", "metrics/fid_clf", "--band", "minmax"]) == 0
    out = capsys.readouterr().out
    for name in ("compare.csv", "compare.md", "compare_fid_clf.png"):
        assert f"wrote {root / name}" in out
    assert "loss=gan: 1 failed left out" in out
    one_run = root / "0_loss=gan,seed=0"
    assert compare.main([str(one_run), "--out", str(root / "single")]) == 0
    assert list(csv.DictReader((root / "single" / "compare.csv").open()))[0]["n"] == "1"


@pytest.mark.parametrize("args, message", [
    (["{empty}"], "error: no run folders found under {empty} (a run folder holds metrics.json, stats.jsonl or .hydra/overrides.yaml)"),
    (["{root}", "--sort", "nope"], "error: unknown metric 'nope' for --sort; available: fid_clf, fid_clf_baseline_n2500, is_clf, loss/d, loss/g"),
    (["{root}", "--plot", "nope"], "error: unknown metric 'nope' for --plot; available: fid_clf, fid_clf_baseline_n2500, grad_norm/g, is_clf, loss/d, loss/g"),
    (["{root}", "--band", "wide"], "error: argument --band: invalid choice: 'wide'"),  # argparse's wording follows
])
def test_bad_input_is_one_line_on_stderr_exit_2_and_writes_nothing(sweep, tmp_path, capsys, args, message):
    root, _ = sweep
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    fill = {"root": root, "empty": tmp_path / "empty"}
    assert compare.main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(message.format(**fill)), err
    assert not list(root.glob("compare*"))


def test_the_ganexp_command_dispatches_compare(sweep, tmp_path, monkeypatch, capsys):
    from ganexp.cli import main as cli

    root, _ = sweep
    monkeypatch.setattr(sys, "argv", ["ganexp", "compare", str(root), "--sort", "is_clf"])
    with pytest.raises(SystemExit) as ok:
        cli.main()
    assert ok.value.code == 0 and f"wrote {root / 'compare.md'}" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["ganexp", "compare", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit) as bad:
        cli.main()
    assert bad.value.code == 2 and capsys.readouterr().err.splitlines() == [f"error: not a folder: {tmp_path / 'nowhere'}"]
