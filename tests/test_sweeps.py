"""Studies end to end through the CLI (issue 11): a sweep that compares, HPARAMS with the metrics,
failing jobs, sweep folders passed back as ckpt=, launchers, Optuna, the default metrics."""
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from ganexp.build import build_run
from ganexp.study.runs import find_runs, load_run
from ganexp.study.table import group_runs
from ganexp.study.table import tabulate as summarise
from ganexp.engine import train
from tests.conftest import ENV, GANEXP, make_cfg, read_events

RING = ["dataset=ring8", "model=mlp", "latent.dim=2", "generator.hidden=[16]", "discriminator.hidden=[16]",
        "device=cpu", "train.steps=4", "train.batch_size=32", "train.log_every=2", "train.sample_every=0",
        "train.ckpt_every=4", "metrics=[modes]", "eval.every=2", "eval.metrics.modes.num_samples=256"]
UNSCORED = RING[:-3]


def ganexp(*args, cwd, timeout=300):
    return subprocess.run([GANEXP, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def hparams_of(run_dir: Path) -> dict[str, HParamsPluginData]:
    (events,) = run_dir.glob("events.out.tfevents.*")
    return {v.tag: HParamsPluginData.FromString(v.metadata.plugin_data.content)
            for ev in EventFileLoader(str(events)).Load() for v in ev.summary.value if v.tag.startswith("_hparams_/")}


@pytest.mark.slow  # end-to-end CLI runs: the fast set stays under 10 minutes on 2 cores
def test_a_sweep_ends_in_hparams_and_a_compare_table(tmp_path):
    r = ganexp("train", "-m", *RING, "loss=lsgan,hinge", "seed=0,1", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    sweep = tmp_path / "sweep"
    names = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert names == ["0_loss-lsgan_seed-0", "1_loss-lsgan_seed-1", "2_loss-hinge_seed-0", "3_loss-hinge_seed-1"]
    assert "sweep: 4 ran, 0 failed, 0 skipped" in r.stdout
    for n in names:
        hp = hparams_of(sweep / n)
        tags = {m.name.tag for m in hp["_hparams_/experiment"].experiment.metric_infos}
        assert {"loss/d", "loss/g", "metrics/modes", "metrics/modes_reverse_kl"} <= tags
        # the swept keys are marked as differing, so TensorBoard's HPARAMS shows them first
        assert {i.name for i in hp["_hparams_/experiment"].experiment.hparam_infos if i.differs} == {"loss", "seed"}
        start = hp["_hparams_/session_start_info"].session_start_info.hparams
        assert start["loss"].string_value == n.split("_")[1].split("-")[1] and start["seed"].number_value == int(n[-1])
    table = summarise(group_runs([load_run(p) for p in find_runs([sweep])]), sort="modes_reverse_kl")
    assert len(table.rows) == 2
    for row in table.rows:
        # the test's own numbers: each run's last modes_reverse_kl in stats.jsonl
        vals = []
        for run in row.runs:
            lines = [json.loads(l) for l in (run.path / "stats.jsonl").read_text().splitlines()]
            vals.append([l["metrics/modes_reverse_kl"] for l in lines if "metrics/modes_reverse_kl" in l][-1])
        mean, std, n = row.stats["modes_reverse_kl"]
        assert n == 2 and mean == pytest.approx(sum(vals) / 2) and std == pytest.approx(torch.tensor(vals).std().item())
    r = ganexp("compare", str(sweep), "--sort", "modes_reverse_kl", "--plot", "modes_reverse_kl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (sweep / "compare.csv").is_file() and (sweep / "compare.md").is_file() and (sweep / "compare_modes_reverse_kl.png").is_file()


@pytest.mark.slow  # end-to-end CLI runs: the fast set stays under 10 minutes on 2 cores
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    r = ganexp("train", "-m", *RING, "train.batch_size=32,0,16", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "sweep: 2 ran, 1 failed (1_train.batch_size-0), 0 skipped" in r.stdout and "Traceback" not in r.stderr
    failed = json.loads((tmp_path / "sweep/1_train.batch_size-0/metrics.json").read_text())
    assert failed == {"status": "failed", "error": "train.batch_size must be >= 1, got 0"}
    assert json.loads((tmp_path / "sweep/2_train.batch_size-16/metrics.json").read_text())["status"] == "done"
    # a sweep folder goes back into the CLI unquoted
    r = ganexp("sample", f"ckpt={tmp_path}/sweep/2_train.batch_size-16", "device=cpu", "n=16", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "sweep/2_train.batch_size-16/samples/grid.png").is_file()


def test_an_objective_no_metric_computes_fails_before_training(tmp_path):
    r = ganexp("train", *UNSCORED, "metrics=[]", "optimized_metric=fid_clf", "hydra.run.dir=run", cwd=tmp_path)
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == 2 and lines[-1] == ("error: optimized_metric=fid_clf is not computed: no metric is configured "
                                               "(metrics=[...]); choose one of them or add its metric")
    assert not (tmp_path / "run/ckpt").exists()


def test_the_default_experiment_scores_itself(tmp_path, clf_cache):
    run = build_run(make_cfg(["metrics=[default]", f"eval.cache_dir={clf_cache}", "eval.metrics.default.num_samples=200"],
                             tmp_path))
    train(run)
    scalars = set(read_events(tmp_path).Tags()["scalars"])
    assert {"metrics/fid_clf", "metrics/fid_clf_baseline", "metrics/is_clf", "metrics/is_clf_real"} <= scalars


@pytest.mark.slow
def test_sigint_leaves_metrics_json_with_its_status(tmp_path):
    p = subprocess.Popen([GANEXP, "train", *UNSCORED, "train.steps=100000", "train.log_every=10", "metrics=[]",
                          "hydra.run.dir=run"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         # a terminal's Ctrl-C: a test run in a background job inherits SIGINT ignored, which
                         # Python (rightly) keeps, so the child gets the default disposition back first
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "run/stats.jsonl").is_file():
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    saved = json.loads((tmp_path / "run/metrics.json").read_text())
    assert p.returncode == 130 and saved["status"] == "interrupted" and saved["step"] >= 10, out  # 128 + SIGINT (README: exit codes)
    assert (tmp_path / "run/ckpt/last.pt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], ["hydra/launcher=submitit_local"]])
def test_parallel_launchers_complete_a_sweep(launcher, tmp_path):
    r = ganexp("train", "-m", *RING, "seed=0,1", *launcher, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    for n in ("0_seed-0", "1_seed-1"):
        assert json.loads((tmp_path / "sweep" / n / "metrics.json").read_text())["status"] == "done"


@pytest.mark.slow
def test_optuna_search_returns_the_best_value(tmp_path):
    r = ganexp("train", "-m", "hparams_search=ring8_lr", "hydra.sweeper.n_trials=2", *RING[5:], "train.batch_size=64",
               "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    best = json.loads(json.dumps(__import__("yaml").safe_load((tmp_path / "sweep/optimization_results.yaml").read_text())))
    values = [json.loads((p / "metrics.json").read_text())["metrics/modes_reverse_kl"]
              for p in (tmp_path / "sweep").iterdir() if (p / "metrics.json").is_file()]
    assert len(values) == 2 and best["best_value"] == pytest.approx(min(values))
    assert "Best value" in r.stdout + r.stderr
