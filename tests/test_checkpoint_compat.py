"""Checkpoints written by an earlier layout of the package keep working: resume, sample, eval.

tests/data/pre_wings_*.pt were written by ganexp at commit 54da3a4, before the package was
grouped into wings (issue 19), with the overrides in FIXTURES. Their configs name the classes of
that tree by their ``_target_`` paths, so they fail to load if a path users' checkpoints hold moves.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import GANEXP, make_cfg

DATA = Path(__file__).parent / "data"

#: fixture -> the overrides it was trained with (20 steps, seed 0, CPU)
FIXTURES = {
    "pre_wings_ring8_mlp": ["experiment=ring8_mlp", "generator.hidden=[32,32]", "discriminator.hidden=[32,32]"],
    # trained when the default loss was nsgan (it is nsgan_r1 since 2026-12-05): resumed with its own options
    "pre_wings_cdcgan_ema": ["loss=nsgan", "conditional=true", "tricks=[ema]", "generator.ngf=8", "discriminator.ndf=8",
                             "latent.dim=16", "train.batch_size=16", "train.num_fixed=20"],
}


@pytest.fixture(params=list(FIXTURES))
def old_run(request, tmp_path) -> tuple[str, Path]:
    """A run folder holding one of the committed checkpoints as its ckpt/last.pt."""
    run = tmp_path / "run"
    (run / "ckpt").mkdir(parents=True)
    shutil.copy(DATA / f"{request.param}.pt", run / "ckpt" / "last.pt")
    return request.param, run


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([GANEXP, *args], capture_output=True, text=True, timeout=300)


def test_an_old_checkpoint_resumes_and_trains_on(old_run):
    from ganexp.build import build_run
    from ganexp.engine import train

    name, run_dir = old_run
    before = torch.load(run_dir / "ckpt" / "last.pt", weights_only=True)
    assert before["step"] == 20
    cfg = make_cfg([*FIXTURES[name], "train.steps=24", "metrics=[]", f"resume={run_dir}"], tiny=False)
    cfg.device = "cpu"
    final = train(build_run(cfg))
    after = torch.load(run_dir / "ckpt" / "last.pt", weights_only=True)
    assert final["status"] == "done" and after["step"] == 24
    # the resumed optimizer continued the saved one: Adam's step count went from 20 to 24
    step = lambda s: next(iter(s["opt_g"]["state"].values()))["step"]  # noqa: E731
    assert float(step(before)) == 20 and float(step(after)) == 24
    changed = [k for k in before["G"] if not torch.equal(before["G"][k], after["G"][k])]
    assert changed, "four more steps left G's weights as they were"
    if "G_sample" in before:  # EMA's copy was restored and kept averaging
        assert not torch.equal(before["G_sample"][next(iter(before["G_sample"]))],
                               after["G_sample"][next(iter(after["G_sample"]))])


def test_an_old_checkpoint_samples(old_run, tmp_path):
    name, run_dir = old_run
    out = tmp_path / "x.npy"
    r = _cli("sample", f"ckpt={run_dir}", "n=12", f"out={out}", "device=cpu")
    assert r.returncode == 0, r.stderr
    x = np.load(out)
    assert x.shape == ((12, 2) if "ring8" in name else (12, 28, 28, 1))
    assert np.isfinite(x.astype(float)).all() and x.std() > 0


def test_an_old_checkpoint_evaluates(old_run, tmp_path, clf_cache):
    name, run_dir = old_run
    out = tmp_path / "eval.json"
    metrics = "metrics=[modes]" if "ring8" in name else "metrics=[fid_clf]"
    r = _cli("eval", f"ckpt={run_dir}", metrics, "num_samples=200", f"cache_dir={clf_cache}", f"out={out}",
             "device=cpu")
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["step"] == 20
    key = "modes" if "ring8" in name else "fid_clf"
    assert np.isfinite(report["metrics"][key])
    if key == "fid_clf":  # 20 steps of training: far above the real-vs-real floor
        floor = next(v for k, v in report["metrics"].items() if k.startswith("fid_clf_baseline"))
        assert report["metrics"]["fid_clf"] > 5 * floor
