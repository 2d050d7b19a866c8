"""Training-recipe options (issue 14): lazy regularisation, learning-rate schedules and
gradient clipping, EMA by half-life, against numbers computed by hand."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ganexp import checkpoint
from ganexp.build import build_run
from ganexp.engine import train
from ganexp.errors import ConfigError
from ganexp.hooks import StepContext
from ganexp.lr_schedule import lr_factor
from ganexp.run import Schedule
from ganexp.tricks.ema import EMA
from ganexp.tricks import penalties
from ganexp.tricks.penalties import DRAGAN, R1, GradientPenalty
from tests.conftest import make_cfg
from tests.test_losses import Linear2D

RING = ["dataset=ring8", "model=mlp"]


# --- lazy regularisation ------------------------------------------------------------------

@pytest.mark.parametrize("make, weight", [
    (lambda k: GradientPenalty(weight=2.0, target=3.0, every=k), 2.0 * (5 - 3) ** 2),
    (lambda k: R1(gamma=4.0, every=k), 4.0 / 2 * 25),
    (lambda k: DRAGAN(weight=10.0, target=1.0, every=k), 10.0 * (5 - 1) ** 2),
])
def test_lazy_penalty_applies_on_one_of_k_d_steps_times_k(make, weight):
    """On a linear critic (||grad D|| = 5 everywhere) each penalty is known; at every=4 the D loss
    gains 4x it on D steps 0 and 4 of 8 and nothing on the others; at every=1 it gains it on each."""
    D = Linear2D([3.0, 4.0])
    ctx = lambda: StepContext(0, None, D, torch.randn(16, 2), None, torch.randn(16, 2), None)  # noqa: E731
    lazy, eager = make(4), make(1)
    added = [lazy.on_d_loss(torch.tensor(1.0), ctx()).item() - 1.0 for _ in range(8)]
    assert added == pytest.approx([4 * weight, 0, 0, 0, 4 * weight, 0, 0, 0], rel=1e-5)
    assert [eager.on_d_loss(torch.tensor(1.0), ctx()).item() - 1.0 for _ in range(3)] == pytest.approx([weight] * 3, rel=1e-5)


def test_lazy_r1_counts_d_steps_not_g_steps_and_resumes_exactly(cfg_factory, monkeypatch, tmp_path):
    """With 2 D steps per G step, 4 G steps are 8 D steps: every=4 computes R1 on 2 of them. The count
    is in the checkpoint, so a resumed run continues the cycle instead of restarting it."""
    calls = []
    real_r1 = penalties.r1_penalty
    monkeypatch.setattr(penalties, "r1_penalty", lambda *a: calls.append(1) or real_r1(*a))
    cfg = cfg_factory(*RING, "tricks=[r1]", "tricks.r1.every=4", "optimizer.d_steps=2", "train.steps=3")
    train(build_run(cfg))
    assert len(calls) == 2  # D steps 0 and 4 of 0..5
    saved = checkpoint.load(str(tmp_path / "run"))
    assert saved["hooks"]["r1"] == {"d_count": 6}
    calls.clear()
    cfg = cfg_factory(*RING, "tricks=[r1]", "tricks.r1.every=4", "optimizer.d_steps=2", "train.steps=6",
                      f"resume={tmp_path / 'run'}")
    train(build_run(cfg))
    assert len(calls) == 1  # D step 8 of 6..11 (a count restarted at 0 would compute it on D steps 6 and 10)
    assert checkpoint.load(str(tmp_path / "run"))["hooks"]["r1"] == {"d_count": 12}


def test_lazy_every_must_be_positive(cfg_factory):
    with pytest.raises(ConfigError, match="r1.every must be >= 1, got 0"):
        build_run(cfg_factory(*RING, "tricks=[r1]", "tricks.r1.every=0"))


# --- learning-rate schedules and gradient clipping --------------------------------------

def stats(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind, steps, warmup, expected", [
    ("constant", 10, 0, {0: 1.0, 5: 1.0, 9: 1.0}),
    ("warmup", 10, 4, {0: 0.25, 1: 0.5, 2: 0.75, 3: 1.0, 4: 1.0, 9: 1.0}),
    ("linear", 10, 0, {0: 1.0, 5: 0.5, 9: 0.1, 10: 0.0}),
    ("linear", 10, 2, {0: 0.5, 1: 1.0, 2: 1.0, 6: 0.5, 9: 0.125}),
    ("cosine", 10, 0, {0: 1.0, 2: 0.5 * (1 + math.cos(0.2 * math.pi)), 5: 0.5, 10: 0.0}),
    ("cosine", 10, 2, {0: 0.5, 2: 1.0, 6: 0.5, 8: 0.5 * (1 + math.cos(0.75 * math.pi))}),
])
def test_each_lr_schedule_follows_its_formula(kind, steps, warmup, expected):
    assert {s: lr_factor(s, steps, kind, warmup) for s in expected} == pytest.approx(expected)


def test_logged_lr_follows_the_schedule_and_a_resume_applies_a_new_one(cfg_factory, tmp_path, capsys):
    """lr/g and lr/d at logged step t (t G steps done) are the lr of G step t - 1. A resume continues
    from the step; with another schedule on the command line it follows that one from there, and
    the scheduled lr in the checkpoint is not reported as a changed setting."""
    base = ["optimizer.g.lr=1e-3", "optimizer.d.lr=4e-3", "train.log_every=1"]
    train(build_run(cfg_factory(*RING, *base, "optimizer.schedule=linear", "train.steps=4", "optimizer.decay_steps=4")))
    lines = stats(tmp_path / "run")
    assert [r["lr/d"] for r in lines] == pytest.approx([4e-3, 3e-3, 2e-3, 1e-3])
    assert [r["lr/g"] for r in lines] == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3])
    capsys.readouterr()
    train(build_run(cfg_factory(*RING, *base, "optimizer.schedule=cosine", "train.steps=6", "optimizer.decay_steps=6",
                                f"resume={tmp_path / 'run'}")))
    cos = [0.5 * (1 + math.cos(math.pi * s / 6)) for s in (4, 5)]
    assert [r["lr/d"] for r in stats(tmp_path / "run")[4:]] == pytest.approx([4e-3 * c for c in cos])
    out = capsys.readouterr().out
    assert "resumed from step 4" in out and "optimizer." not in out


def test_clip_grad_norm_bounds_both_players_gradients(tmp_path):
    train(build_run(make_cfg([*RING, "train.log_every=1"], tmp_path / "free")))
    free = stats(tmp_path / "free")
    assert min(min(r["grad_norm/g"], r["grad_norm/d"]) for r in free) > 1e-3  # the bound below binds
    train(build_run(make_cfg([*RING, "train.log_every=1", "optimizer.clip_grad_norm=1e-3"], tmp_path / "clipped")))
    clipped = stats(tmp_path / "clipped")
    assert max(max(r["grad_norm/g"], r["grad_norm/d"]) for r in clipped) == pytest.approx(1e-3, rel=1e-4)


@pytest.mark.parametrize("overrides, message", [
    (["optimizer.schedule=step"], "optimizer.schedule must be one of constant, warmup, linear, cosine, got 'step'"),
    (["optimizer.schedule=warmup"], "optimizer.schedule=warmup needs optimizer.warmup_steps > 0"),
    (["optimizer.schedule=cosine", "optimizer.warmup_steps=4"], "optimizer.decay_steps (4) must be > optimizer.warmup_steps (4)"),
    (["optimizer.clip_grad_norm=0"], "optimizer.clip_grad_norm must be > 0 or null, got 0.0"),
])
def test_bad_schedule_settings_fail_in_one_line(cfg_factory, overrides, message):
    with pytest.raises(ConfigError) as e:
        build_run(cfg_factory(*RING, *overrides))
    assert str(e.value) == message


# --- EMA by half-life in images ------------------------------------------------------------

def ema_of(trick: EMA, weights: list[float], batch_size: int = 8, d_steps: int = 1) -> list[float]:
    """The EMA copy of a one-weight G after each G step whose weight is ``weights[step]``."""
    G = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        G.weight.fill_(0.0)
    trick.setup(SimpleNamespace(G=G, schedule=Schedule(100, batch_size, d_steps)))
    out = []
    for step, w in enumerate(weights):
        with torch.no_grad():
            G.weight.fill_(w)
        trick.after_g_step(step)
        out.append(trick.ema.weight.item())
    return out


def averaged(betas: list[float], weights: list[float]) -> list[float]:
    out, e = [], 0.0
    for b, w in zip(betas, weights):
        e = b * e + (1 - b) * w
        out.append(e)
    return out


def test_ema_half_life_in_images_gives_the_hand_computed_weights():
    """batch 8, half-life 32 images: decay 0.5 ** (8/32) per step; with 2 D steps a G step is 16
    images, decay 0.5 ** (16/32). With rampup 0.5 the half-life is min(32, 0.5 * images seen
    before the step): 0, 4, 8, 12, 16 images at steps 0..4, decays 0, 1/4, 1/2, 2^(-2/3), 2^(-1/2)."""
    w = [1.0, 2.0, 4.0, 0.0, 3.0, 5.0]
    assert ema_of(EMA(halflife_images=32), w) == pytest.approx(averaged([2 ** -0.25] * 6, w), rel=1e-6)
    assert ema_of(EMA(halflife_images=32), w, d_steps=2) == pytest.approx(averaged([2 ** -0.5] * 6, w), rel=1e-6)
    ramp = [0.0, 0.25, 0.5, 2 ** (-2 / 3), 2 ** -0.5, 2 ** -0.4]
    assert ema_of(EMA(halflife_images=32, rampup=0.5), w) == pytest.approx(averaged(ramp, w), rel=1e-6)
    capped = EMA(halflife_images=12, rampup=0.5)
    assert ema_of(capped, w) == pytest.approx(averaged([0.0, 0.25, 0.5, 2 ** (-2 / 3), 2 ** (-2 / 3), 2 ** (-2 / 3)], w), rel=1e-6)
    assert capped.scalars(5) == {"decay": pytest.approx(2 ** (-2 / 3))}


@pytest.mark.parametrize("overrides, message", [
    (["tricks.ema.halflife_images=0"], "ema.halflife_images must be > 0 or null, got 0"),
    (["tricks.ema.rampup=0.05"], "ema.rampup needs ema.halflife_images"),
])
def test_bad_ema_half_life_settings_fail_in_one_line(cfg_factory, overrides, message):
    with pytest.raises(ConfigError) as e:
        build_run(cfg_factory(*RING, "tricks=[ema]", *overrides))
    assert str(e.value) == message
