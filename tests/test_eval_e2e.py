"""Evaluation end to end: metrics while training (TensorBoard, metrics.json, ckpt/best.pt)
and `ganexp eval` on a checkpoint as a subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganexp.build import build_run
from ganexp.engine import train
from tests.conftest import make_cfg, read_events
from tests.test_metrics_features import clf_cache  # noqa: F401  (session fixture: the classifier, trained once)

GANEXP = str(Path(sys.executable).with_name("ganexp"))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, clf_cache):  # noqa: F811
    out = tmp_path_factory.mktemp("digits_run")
    cfg = make_cfg(["metrics=[fid_clf,is_clf]", "eval.every=2", "eval.num_samples=200", "eval.best=fid_clf",
                    f"eval.cache_dir={clf_cache}"], out)
    run = build_run(cfg)
    return out, train(run)


def test_training_logs_metrics_keeps_the_best_checkpoint_and_writes_metrics_json(digits_run):
    out, final = digits_run
    scalars = read_events(out).Tags()["scalars"]
    assert {"metrics/fid_clf", "metrics/fid_clf_baseline", "metrics/is_clf", "metrics/is_clf_real"} <= set(scalars)
    fid = [e.value for e in read_events(out).Scalars("metrics/fid_clf")]
    assert len(fid) == 2 and all(v > 0 for v in fid)  # steps 2 and 4
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics/fid_clf"] == pytest.approx(fid[-1]) and 1.0 <= saved["metrics/is_clf"] <= 10.0
    best = torch.load(out / "ckpt" / "best.pt", weights_only=True)
    assert best["best"]["fid_clf"] == pytest.approx(min(fid))


def test_2d_runs_log_mode_coverage_and_the_density_plot(tmp_path):
    cfg = make_cfg(["experiment=ring8_mlp", "metrics=[modes,kde]", "eval.every=4", "train.num_fixed=16",
                    "eval.metrics.modes.num_samples=500", "eval.metrics.kde.num_samples=300"], tmp_path)
    final = train(build_run(cfg))
    acc = read_events(tmp_path)
    assert "metrics/kde" in acc.Tags()["images"]
    assert 0 <= final["metrics/modes"] <= 8 and 0 <= final["metrics/modes_hq_percent"] <= 100
    assert (tmp_path / "samples" / "kde_0000004.png").is_file()


def _eval(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "GANEXP_OFFLINE": "1", **(env or {})}
    return subprocess.run([GANEXP, "eval", *args], capture_output=True, text=True, env=e, timeout=300)


def test_ganexp_eval_prints_a_table_and_writes_json(digits_run, clf_cache, tmp_path):  # noqa: F811
    out, _ = digits_run
    p = _eval(f"ckpt={out}", "metrics=[fid_clf,kid_clf,pr_clf]", "num_samples=300", f"cache_dir={clf_cache}",
              f"out={tmp_path / 'm.json'}", "device=cpu")
    assert p.returncode == 0, p.stderr
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["step"] == 4 and report["num_samples"] == 300
    assert set(report["metrics"]) == {"fid_clf", "fid_clf_baseline", "kid_clf", "kid_clf_baseline",
                                      "pr_clf_precision", "pr_clf_recall"}
    assert report["metrics"]["fid_clf"] > report["metrics"]["fid_clf_baseline"] > 0  # 4 steps: far from the data
    assert min(report["classifier_accuracy"].values()) >= 0.95
    assert "fid_clf_baseline" in p.stdout and "wrote" in p.stdout


def test_ganexp_eval_without_inception_weights_offline(digits_run, tmp_path):
    out, _ = digits_run
    p = _eval(f"ckpt={out}", "metrics=[fid]", "device=cpu", env={"TORCH_HOME": str(tmp_path)})
    assert p.returncode == 2
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1 and "InceptionV3 weights" in lines[0] and "metrics=[fid_clf]" in lines[0]
    assert "Traceback" not in p.stderr


def test_scoring_a_run_does_not_change_its_training(clf_cache, tmp_path, monkeypatch):  # noqa: F811
    """The first evaluation loads the cached classifier; building it must not draw from the
    training RNG, or a run with metrics=[fid_clf] trains differently from the same run without."""
    from ganexp.metrics import features

    monkeypatch.setattr(features, "_EXTRACTORS", {})  # a new process: only the file cache remains
    scored = build_run(make_cfg(["metrics=[fid_clf]", "eval.every=2", "eval.num_samples=64",
                                 f"eval.cache_dir={clf_cache}"], tmp_path / "scored"))
    train(scored)
    plain = build_run(make_cfg([], tmp_path / "plain"))
    train(plain)
    for k, v in plain.G.state_dict().items():
        assert torch.equal(scored.G.state_dict()[k], v), k
