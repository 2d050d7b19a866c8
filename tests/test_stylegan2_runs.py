"""StyleGAN2 with its regularisers and ADA as the CLI builds them: a few training steps at 16 and 28 px,
conditional and not, with ema, r1, path_length, ada, pacgan, and on 2 gloo ranks; the scalars reach
TensorBoard, the checkpoint samples in W (truncation, style mixing), the metrics score it."""
from __future__ import annotations

import math

import pytest
import torch

from ganexp.build import build_run
from ganexp.engine import train
from ganexp.sample.generate import sample
from tests.conftest import read_events
from tests.test_sample import sample_cfg

#: widths small enough for a few CPU steps
SMALL = ["model=stylegan2", "latent.dim=16", "generator.w_dim=16", "generator.mapping_layers=2",
         "generator.channel_base=64", "generator.channel_max=8", "discriminator.channel_base=64",
         "discriminator.channel_max=8", "train.steps=8", "train.log_every=4", "train.ckpt_every=8", "train.sample_every=8"]
REGS = ["tricks=[r1,path_length,ada,ema]", "tricks.r1.every=4", "tricks.ada.kimg=0.1"]


def _run(cfg_factory, *extra):
    run = build_run(cfg_factory(*SMALL, *extra))
    final = train(run)
    assert final["status"] == "done" and final["step"] == 8
    assert math.isfinite(final["loss/d"]) and math.isfinite(final["loss/g"])
    return run, final


def test_conditional_28px_with_r1_path_length_ada_ema_logs_samples_and_scores(cfg_factory, clf_cache):
    run, final = _run(cfg_factory, "conditional=true", *REGS, "metrics=[fid_clf,prdc_clf]", "eval.every=8",
                      "eval.num_samples=200", f"eval.cache_dir={clf_cache}")
    tags = set(read_events(run.out_dir).Tags()["scalars"])
    want = {"trick/ada/p", "trick/ada/rt", "trick/path_length/value", "trick/path_length/mean", "trick/r1/value",
            "metrics/fid_clf", "metrics/prdc_clf_density", "metrics/prdc_clf_coverage_baseline"}
    assert want <= tags, want - tags
    assert 0 <= final["trick/ada/p"] <= 1 and -1 <= final["trick/ada/rt"] <= 1
    assert 0 <= final["metrics/prdc_clf_coverage"] <= 1 and final["metrics/prdc_clf_precision_baseline"] > 0.5
    out = sample(sample_cfg(f"ckpt={run.out_dir}", "mode=truncation", "psi=0", "n=6", "label=3",
                            f"out={run.out_dir / 't.pt'}"))
    x = torch.load(out)["x"]
    assert x.shape == (6, 1, 28, 28)
    assert (x - x[:1]).abs().amax() < 0.5  # psi = 0: every latent maps to the mean W (only the noise differs)
    out = sample(sample_cfg(f"ckpt={run.out_dir}", "mode=mix", "mix_rows=2", "mix_cols=3", f"out={run.out_dir / 'm.pt'}"))
    assert torch.load(out)["x"].shape == (12, 1, 28, 28)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [
    ["dataset.resolution=16", *REGS],
    ["dataset.resolution=16", "conditional=true", *REGS],
    [*REGS],
    ["dataset.resolution=16", "tricks=[pacgan,ada,ema]", "tricks.pacgan.m=2"],
    ["tricks=[pacgan,r1,path_length]"],
])
def test_trains_at_16_and_28_px_conditional_and_not_with_each_trick(cfg_factory, extra):
    run, final = _run(cfg_factory, *extra)
    res = 16 if "dataset.resolution=16" in extra else 28
    assert run.G(torch.randn(2, 16), torch.zeros(2, dtype=torch.long) if run.G.num_classes else None).shape[-1] == res


@pytest.mark.slow
def test_trains_on_two_gloo_ranks(tmp_path):
    from tests.test_distributed import spawn

    overrides = [*SMALL, "dataset=digits", *REGS, "train.batch_size=8", "metrics=[]", "device=cpu"]
    r0, r1 = spawn(overrides, tmp_path / "run", tmp_path / "results", timeout=300)
    assert "error" not in r0 and "error" not in r1, (r0.get("error"), r1.get("error"))
    for name, p in r0["params"].items():  # DDP keeps the ranks identical; ADA's p is all-reduced
        assert torch.equal(p, r1["params"][name]), name
    assert r0["final"]["status"] == "done" and r0["final"]["trick/ada/p"] == r1["final"]["trick/ada/p"]
