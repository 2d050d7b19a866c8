"""Tricks as the CLI composes them: every YAML builds, bad combinations fail in one line,
tricks combine in a real run, their state survives a resume, the EMA generator samples."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ganexp.engine import checkpoint
from ganexp.build import build_run
from ganexp.sample.rebuild import load_generator
from ganexp.engine import train
from ganexp.errors import ConfigError
from ganexp.hooks import Hook
from tests.conftest import docs_papers, make_cfg, plain, read_events

TRICKS = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "tricks").glob("*.yaml"))
#: A loss each trick fits (label tricks need targets), and what it logs to TensorBoard.
LOSS = {"label_smoothing": "nsgan", "soft_labels": "lsgan", "label_flip": "gan", "label_swap": "nsgan"}
LOGS = {"instance_noise": "std", "g_layer_noise": "std", "gradient_penalty": "value", "r1": "value", "dragan": "value",
        "weight_clip": "at_clip_fraction", "orthogonal_reg": "value", "historical_averaging": "weight",
        "feature_matching": "value", "spectral_norm": "sigma/head", "experience_replay": "fill",
        "checkpoint_swap": "swaps", "ema": "decay", "temperature_anneal": "temperature", "acgan": "acc_real",
        "ada": "p", "path_length": "value"}
#: What else a trick needs to build.
NEEDS = {"temperature_anneal": "generator.output=relaxed_bernoulli", "acgan": "conditional=true discriminator.cond=acgan",
         "path_length": "model=stylegan2"}


#: docs/tricks.md's catalogue: each trick's row and the papers it names.
PAPERS = docs_papers("tricks.md")


def test_the_catalogue_is_complete():
    """Every conf/tricks/*.yaml has a row in docs/tricks.md naming its paper, and every row a YAML."""
    assert set(PAPERS) == set(TRICKS)
    assert all(PAPERS[t] for t in TRICKS), [t for t in TRICKS if not PAPERS[t]]


@pytest.mark.parametrize("name", TRICKS)
def test_each_trick_composes_keyed_by_its_name_and_builds(name, cfg_factory):
    cfg = cfg_factory(f"tricks=[{name}]", f"loss={LOSS.get(name, 'nsgan')}", *NEEDS.get(name, "seed=0").split())
    assert list(cfg.tricks) == [name] and cfg.tricks[name]._target_.startswith("ganexp.tricks.")
    run = build_run(cfg)
    (trick,) = run.tricks
    assert isinstance(trick, Hook) and trick.name == name
    doc = plain(type(trick).__doc__ or "")
    assert [p for p in PAPERS[name] if p not in doc] == [], f"{type(trick).__name__}'s docstring cites the papers docs/tricks.md names"


@pytest.mark.parametrize("overrides, message", [
    (["tricks=[label_smoothing]", "loss=wgan"],
     "label_smoothing needs a loss with real/fake targets (gan, lsgan, nsgan); loss is WGAN"),
    (["tricks=[soft_labels]", "loss=hinge"], "soft_labels needs a loss with real/fake targets (gan, lsgan, nsgan); loss is Hinge"),
    (["tricks=[virtual_batch_norm]", "model=mlp"], "virtual_batch_norm needs batch norm in the generator"),
    (["tricks=[gradient_penalty]", "loss=wgan_gp"], "gradient_penalty repeats the penalty loss=wgan_gp already has"),
    (["tricks=[weight_clip]", "loss=wgan"], "weight_clip repeats the clipping loss=wgan already does"),
    (["tricks=[ema]", "tricks.ema.decay=1.5"], "ema.decay must be in [0, 1), got 1.5"),
    (["tricks=[checkpoint_swap,weight_clip,historical_averaging]"],
     "list checkpoint_swap after weight_clip, historical_averaging: they act after D's step and would see the old D"),
    (["tricks=[latent_prior]", "tricks.latent_prior.prior=cube"], "latent_prior.prior must be one of normal, uniform, sphere"),
    (["tricks=[temperature_anneal]"], "temperature_anneal needs a discrete output: generator.output=relaxed_bernoulli"),
])
def test_nonsense_combinations_fail_at_build_in_one_line(overrides, message, cfg_factory):
    with pytest.raises(ConfigError) as e:
        build_run(cfg_factory(*overrides))
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("preset, opt_g, opt_d", [
    ("sgd_adam", (torch.optim.Adam, 2e-4), (torch.optim.SGD, 1e-2)),
    ("ttur", (torch.optim.Adam, 1e-4), (torch.optim.Adam, 4e-4)),
])
def test_optimizer_presets_compose_to_their_optimizers(preset, opt_g, opt_d, cfg_factory):
    run = build_run(cfg_factory(f"optimizer={preset}", "dataset=ring8", "model=mlp"))
    for opt, (kind, lr) in ((run.opt_g, opt_g), (run.opt_d, opt_d)):
        assert type(opt) is kind and opt.param_groups[0]["lr"] == pytest.approx(lr)
    if preset == "ttur":
        assert run.opt_g.param_groups[0]["betas"] == run.opt_d.param_groups[0]["betas"] == (0.0, 0.9)
    else:
        assert run.opt_d.param_groups[0]["momentum"] == 0.9


def test_latent_prior_trick_sets_the_prior_of_the_fixed_latents(cfg_factory):
    run = build_run(cfg_factory("tricks=[latent_prior]", "dataset=ring8", "model=mlp"))
    assert run.latent.prior == "sphere"
    torch.testing.assert_close(run.fixed_z.norm(dim=1), torch.full((16,), math.sqrt(100)))
    run = build_run(cfg_factory("tricks=[latent_prior]", "tricks.latent_prior.prior=uniform", "dataset=ring8", "model=mlp"))
    assert run.latent.prior == "uniform" and run.fixed_z.abs().max() <= 1


def test_combined_tricks_log_to_tensorboard_and_ema_samples(cfg_factory):
    run = build_run(cfg_factory("tricks=[spectral_norm,ema,instance_noise]", "loss=hinge"))
    train(run)
    acc = read_events(run.out_dir)
    tags = set(acc.Tags()["scalars"])
    assert {"trick/ema/decay", "trick/instance_noise/std", "trick/spectral_norm/sigma/head"} <= tags
    # anneal_steps = train.steps = 4: std 0.1 * (1 - step / 4) at the logged steps 2 and 4
    assert [(e.step, round(e.value, 6)) for e in acc.Scalars("trick/instance_noise/std")] == [(2, 0.05), (4, 0.0)]
    sigmas = [e.value for t in tags if t.startswith("trick/spectral_norm/sigma/") for e in acc.Scalars(t)]
    assert sigmas and all(abs(s - 1) < 0.05 for s in sigmas)
    state = checkpoint.load(run.out_dir)
    ema = run.tricks[1].ema.state_dict()
    assert all(torch.equal(state["G_sample"][k], v.cpu()) for k, v in ema.items())
    assert not all(torch.equal(state["G"][k], v.cpu()) for k, v in ema.items())
    G, _, _ = load_generator(str(run.out_dir), device="cpu")
    assert all(torch.equal(G.state_dict()[k], v) for k, v in state["G_sample"].items())


STATEFUL = ["tricks=[ema,experience_replay,historical_averaging,checkpoint_swap,instance_noise]",
            "tricks.checkpoint_swap.every=2", "tricks.checkpoint_swap.prob=0.5", "tricks.ema.decay=0.5",
            "tricks.instance_noise.anneal_steps=10", "tricks.historical_averaging.decay_steps=10",
            "dataset=ring8", "model=mlp"]


def flat(state):
    if isinstance(state, dict):
        return {f"{k}.{kk}": v for k, sub in state.items() for kk, v in flat(sub).items()}
    if isinstance(state, (list, tuple)):
        return flat(dict(enumerate(state)))
    return {"": state}


def test_trick_state_is_checkpointed_and_a_resumed_run_continues_exactly(tmp_path):
    straight = build_run(make_cfg([*STATEFUL, "train.steps=8"], tmp_path / "straight"))
    train(straight)
    train(build_run(make_cfg(STATEFUL, tmp_path / "split")))
    saved = checkpoint.load(tmp_path / "split")["hooks"]
    assert {"ema", "experience_replay", "historical_averaging", "checkpoint_swap"} <= {k for k, v in saved.items() if v}
    resumed = build_run(make_cfg([*STATEFUL, "train.steps=8", f"resume={tmp_path / 'split'}"], tmp_path / "x"))
    train(resumed)
    for a, b in zip(straight.tricks, resumed.tricks):
        sa, sb = flat(a.state_dict()), flat(b.state_dict())
        assert sa.keys() == sb.keys()
        for k in sa:
            same = torch.equal(sa[k], sb[k]) if isinstance(sa[k], torch.Tensor) else sa[k] == sb[k]
            assert same, f"{a.name}: {k}"
    assert straight.tricks[3].snapshots and straight.tricks[1].count == 8 * 8


@pytest.mark.slow
@pytest.mark.parametrize("name", TRICKS)
def test_each_trick_trains_end_to_end(name, cfg_factory):
    run = build_run(cfg_factory(f"tricks=[{name}]", f"loss={LOSS.get(name, 'nsgan')}", "train.steps=6", *NEEDS.get(name, "seed=0").split(),
                                "train.log_every=3", "tricks.checkpoint_swap.every=2" if name == "checkpoint_swap" else "seed=0"))
    final = train(run)
    assert final["step"] == 6 and math.isfinite(final["loss/d"]) and math.isfinite(final["loss/g"])
    if name in LOGS:
        assert f"trick/{name}/{LOGS[name]}" in read_events(run.out_dir).Tags()["scalars"]
