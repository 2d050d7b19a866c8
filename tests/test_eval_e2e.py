"""Evaluation end to end: metrics while training (TensorBoard, metrics.json, ckpt/best.pt)
and `ganexp eval` on a checkpoint as a subprocess."""
from __future__ import annotations

import json
import math
import os
import subprocess

import pytest
import torch

from ganexp.build import build_run
from ganexp.sample.rebuild import load_generator
from ganexp.data.digits import digits
from ganexp.data.toy import ring_centers
from ganexp.engine import train
from ganexp.metrics.features import get_extractor
from ganexp.metrics.realdata import real
from tests.conftest import GANEXP, fid_by_hand, is_by_hand, make_cfg, read_events


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, clf_cache):
    out = tmp_path_factory.mktemp("digits_run")
    cfg = make_cfg(["metrics=[fid_clf,is_clf]", "eval.every=2", "eval.num_samples=200", "eval.best=fid_clf",
                    f"eval.cache_dir={clf_cache}"], out)
    run = build_run(cfg)
    return out, train(run)


def evaluated_samples(run_dir, n: int):
    """The n samples an evaluation at the checkpoint's step scores: its sampling G in eval mode
    on latents drawn from seed 0 (n fits one sampler batch), away from the test's RNG."""
    G, latent, _ = load_generator(str(run_dir), device="cpu")
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0)
        return G(*latent.sample(n))


def test_training_logs_metrics_keeps_the_best_checkpoint_and_writes_metrics_json(digits_run, clf_cache):
    out, final = digits_run
    scalars = read_events(out).Tags()["scalars"]
    assert {"metrics/fid_clf", "metrics/fid_clf_baseline", "metrics/is_clf", "metrics/is_clf_real"} <= set(scalars)
    fid = [(e.step, e.value) for e in read_events(out).Scalars("metrics/fid_clf")]
    assert [s for s, _ in fid] == [2, 4]
    # step 4's scores, recomputed apart from the evaluators: classifier features and logits of the
    # final G's 200 samples against the first 200 real digits of the fixed shuffle
    ext = get_extractor("clf", digits(), torch.device("cpu"), clf_cache)
    with torch.inference_mode():
        fake_f, fake_logits = ext(evaluated_samples(out, 200))
        real_f, _ = ext(torch.cat(list(real(digits(), 200, 500))))
    hand = fid_by_hand(real_f, fake_f)
    assert fid[-1][1] == pytest.approx(hand, rel=1e-4)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics/fid_clf"] == pytest.approx(fid[-1][1])
    assert saved["metrics/is_clf"] == pytest.approx(is_by_hand(fake_logits, 10), rel=1e-6)
    best = torch.load(out / "ckpt" / "best.pt", weights_only=True)
    assert best["best"]["fid_clf"] == pytest.approx(min(v for _, v in fid))


def test_2d_runs_log_mode_coverage_and_the_density_plot(tmp_path):
    cfg = make_cfg(["experiment=ring8_mlp", "metrics=[modes,kde]", "eval.every=4", "train.num_fixed=16",
                    "eval.metrics.modes.num_samples=256", "eval.metrics.kde.num_samples=300"], tmp_path)
    final = train(build_run(cfg))
    acc = read_events(tmp_path)
    assert "metrics/kde" in acc.Tags()["images"]
    # counted by hand from the final G's 256 samples: nearest of the 8 centres on the radius-2 ring,
    # high quality within 3 std (0.06), a mode captured with >= 0.2 * 256 / 8 = 6.4 such samples
    x = evaluated_samples(tmp_path, 256)
    dist, mode = torch.cdist(x, ring_centers(8, 2.0)).min(1)
    hq = dist <= 3 * 0.02
    p = torch.bincount(mode, minlength=8).double() / 256
    assert final["metrics/modes"] == float((torch.bincount(mode[hq], minlength=8) >= 6.4).sum())
    assert final["metrics/modes_hq_percent"] == pytest.approx(100 * hq.double().mean().item())
    assert final["metrics/modes_reverse_kl"] == pytest.approx(math.log(8) + float((p[p > 0] * p[p > 0].log()).sum()))
    assert (tmp_path / "samples" / "kde_0000004.png").is_file()


def _eval(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "GANEXP_OFFLINE": "1", **(env or {})}
    return subprocess.run([GANEXP, "eval", *args], capture_output=True, text=True, env=e, timeout=300)


def test_ganexp_eval_prints_a_table_and_writes_json(digits_run, clf_cache, tmp_path):
    out, _ = digits_run
    p = _eval(f"ckpt={out}", "metrics=[fid_clf,kid_clf,pr_clf]", "num_samples=300", f"cache_dir={clf_cache}",
              f"out={tmp_path / 'm.json'}", "device=cpu")
    assert p.returncode == 0, p.stderr
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["step"] == 4 and report["num_samples"] == {"fid_clf": 300, "kid_clf": 300, "pr_clf": 300}
    assert set(report["metrics"]) == {"fid_clf", "fid_clf_baseline", "kid_clf", "kid_clf_baseline",
                                      "pr_clf_precision", "pr_clf_recall"}
    assert report["metrics"]["fid_clf"] > 10 * report["metrics"]["fid_clf_baseline"]  # 4 steps: far from the data
    assert min(report["classifier_accuracy"].values()) >= 0.95
    assert "fid_clf_baseline" in p.stdout and "wrote" in p.stdout
    last, m = p.stdout.strip().splitlines()[-1], report["metrics"]  # the summary: scores beside their floors
    assert last.startswith("eval @ 4 in ") and last.endswith(f"; wrote {tmp_path / 'm.json'}"), last
    assert f"fid_clf {m['fid_clf']:.3g} (floor {m['fid_clf_baseline']:.3g})" in last, last


def test_ganexp_eval_without_inception_weights_offline(digits_run, tmp_path):
    out, _ = digits_run
    p = _eval(f"ckpt={out}", "metrics=[fid]", "device=cpu", env={"TORCH_HOME": str(tmp_path)})
    assert p.returncode == 2
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1 and "InceptionV3 weights" in lines[0] and "metrics=[fid_clf]" in lines[0]
    assert "Traceback" not in p.stderr


def test_scoring_a_run_does_not_change_its_training(clf_cache, tmp_path, monkeypatch):
    """The first evaluation loads the cached classifier; building it must not draw from the
    training RNG, or a run with metrics=[fid_clf] trains differently from the same run without."""
    from ganexp.metrics import features

    monkeypatch.setattr(features, "_EXTRACTORS", {})  # a new process: only the file cache remains
    scored = build_run(make_cfg(["model=mlp", "metrics=[fid_clf]", "eval.every=2", "eval.num_samples=64",
                                 f"eval.cache_dir={clf_cache}"], tmp_path / "scored"))
    train(scored)
    plain = build_run(make_cfg(["model=mlp"], tmp_path / "plain"))
    train(plain)
    for k, v in plain.G.state_dict().items():
        assert torch.equal(scored.G.state_dict()[k], v), k
