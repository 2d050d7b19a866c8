"""Training-recipe options (issue 14): lazy regularisation, learning-rate schedules and
gradient clipping, EMA by half-life, SAGAN self-attention, against numbers computed by hand."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from ganexp.engine import checkpoint
from ganexp.build import build_run
from ganexp.engine import train
from ganexp.errors import ConfigError
from ganexp.hooks import StepContext
from ganexp.engine.lr_schedule import lr_factor
from ganexp.models.attention import SelfAttention
from ganexp.models.dcgan import DCGANDiscriminator, DCGANGenerator
from ganexp.tricks.ema import EMA
from ganexp.losses import penalty as lazy_penalties
from ganexp.tricks.penalties import DRAGAN, R1, GradientPenalty
from tests.conftest import Linear2D, make_cfg, setup_context


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
    real_r1 = lazy_penalties.r1_penalty
    monkeypatch.setattr(lazy_penalties, "r1_penalty", lambda *a: calls.append(1) or real_r1(*a))
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
    trick.setup(setup_context(G, batch_size=batch_size, d_steps=d_steps))
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


# --- self-attention (SAGAN) ----------------------------------------------------------------

def test_self_attention_matches_a_hand_computed_reference():
    """8 channels (C/8 = 1), two positions x0 = e0, x1 = e1; query weights (1, 2, 0..), key
    weights (3, 1, 0..), value the identity, gamma 0.5. Queries 1, 2; keys 3, 1: position 0's
    scores (3, 1) give softmax (1/(1+e^-2), 1/(1+e^2)) = (0.880797, 0.119203), position 1's (6, 2)
    give (0.982014, 0.017986); out_i = x_i + 0.5 * sum_j beta_ij x_j."""
    block = SelfAttention(8)
    with torch.no_grad():
        for conv in (block.query, block.key, block.value):
            conv.bias.zero_()
        block.query.weight.zero_()[0, :2, 0, 0] = torch.tensor([1.0, 2.0])
        block.key.weight.zero_()[0, :2, 0, 0] = torch.tensor([3.0, 1.0])
        block.value.weight.copy_(torch.eye(8)[:, :, None, None])
        block.gamma.fill_(0.5)
    x = torch.zeros(1, 8, 1, 2)
    x[0, 0, 0, 0] = x[0, 1, 0, 1] = 1.0
    out = block(x)
    expected = torch.zeros(1, 8, 1, 2)
    expected[0, :2, 0, 0] = torch.tensor([1 + 0.5 * 0.880797, 0.5 * 0.119203])
    expected[0, :2, 0, 1] = torch.tensor([0.5 * 0.982014, 1 + 0.5 * 0.017986])
    assert torch.allclose(out, expected, atol=1e-6)


def test_self_attention_starts_as_the_identity_with_a_learnable_gamma():
    torch.manual_seed(0)
    block = SelfAttention(16)
    x = torch.randn(2, 16, 4, 4)
    assert block.gamma.item() == 0.0 and block.gamma.requires_grad
    out = block(x)
    assert torch.equal(out, x)
    out.pow(2).sum().backward()
    assert block.gamma.grad.abs().item() > 0  # gamma learns from the first step


def test_dcgan_with_attention_at_16px_runs_forward_and_backward_on_32px_data():
    torch.manual_seed(0)
    G = DCGANGenerator(channels=3, resolution=32, z_dim=8, ngf=8, attention=16)
    D = DCGANDiscriminator(channels=3, resolution=32, ndf=8, attention=16)
    seen = []
    for m in (G, D):
        (block,) = [b for b in m.modules() if isinstance(b, SelfAttention)]
        block.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape[1:])))
    x = G(torch.randn(4, 8), None)
    assert x.shape == (4, 3, 32, 32)
    D(x, None).sum().backward()
    assert seen == [(8, 16, 16), (8, 16, 16)]  # G: ngf channels at 16 px; D: ndf after its first stage
    assert all(p.grad is not None for p in G.parameters())


@pytest.mark.parametrize("overrides, message", [
    (["generator.attention=28"], "generator.attention=28 is not a feature-map resolution of dcgan's generator at 28 px; "
                                 "choose one of 7, 14 (0: none)"),
    (["discriminator.attention=16"], "discriminator.attention=16 is not a feature-map resolution of dcgan's discriminator "
                                     "at 28 px; choose one of 7, 14 (0: none)"),
])
def test_attention_at_a_size_the_model_lacks_fails_in_one_line(cfg_factory, overrides, message):
    with pytest.raises(ConfigError) as e:
        build_run(cfg_factory("model=dcgan", *overrides))
    assert str(e.value) == message


def test_dcgan_with_attention_trains_from_the_command_line(cfg_factory):
    run = build_run(cfg_factory("model=dcgan", "generator.attention=14", "discriminator.attention=7",
                                "generator.ngf=8", "discriminator.ndf=8", "train.steps=2"))
    assert sum(isinstance(m, SelfAttention) for m in [*run.G.modules(), *run.D.modules()]) == 2
    assert train(run)["status"] == "done"
