"""Tricks as the CLI composes them: every YAML builds, bad combinations fail in one line,
tricks combine in a real run, their state survives a resume, the EMA generator samples."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ganexp.engine import checkpoint
from ganexp.build import build_run
from ganexp.sample.rebuild import load_generator
from ganexp.engine import train
from ganexp.errors import ConfigError
from ganexp.hooks import Hook
from tests.conftest import docs_papers, make_cfg, options, plain, read_events, scalars, spy, training_outputs

TRICKS = options("tricks")
#: A loss each trick fits (label tricks need targets).
LOSS = {"label_smoothing": "nsgan", "soft_labels": "lsgan", "label_flip": "gan", "label_swap": "nsgan"}
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
     "label_smoothing needs a loss with real/fake targets (gan, lsgan, nsgan, nsgan_r1); loss is WGAN"),
    (["tricks=[soft_labels]", "loss=hinge"], "soft_labels needs a loss with real/fake targets (gan, lsgan, nsgan, nsgan_r1); loss is Hinge"),
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


# ---------------------------------------------------------------- each trick end to end: what it does
#
# Every trick trains the default tiny run (DCGAN on the digits, batch 8) for 6 steps, logging at steps
# 3 and 6, with spies on the run's modules and hooks; its check compares what the run did with the
# trick's definition, computed here by hand. ``arm(run)`` installs the spies before training and
# returns the check to run after it.

B, STEPS = 8, 6
#: Settings that make a trick's effect visible in 6 steps (besides what it NEEDS).
EXTRA = {
    "label_flip": ["tricks.label_flip.p=0.3"],
    "ema": ["tricks.ema.decay=0.5"],
    "feature_matching": ["tricks.feature_matching.replace=true"],
    "checkpoint_swap": ["tricks.checkpoint_swap.every=3", "tricks.checkpoint_swap.keep=1", "tricks.checkpoint_swap.prob=1.0"],
    "diffaugment": ["tricks.diffaugment.policy=translation"],
    "temperature_anneal": ["tricks.temperature_anneal.rate=0.2"],
    "acgan": ["tricks.acgan.weight_d=0.5", "tricks.acgan.weight_g=2.0"],
    "ada": ["tricks.ada.p=1.0"],
}


def first_inputs(module: nn.Module) -> list[torch.Tensor]:
    """The first input of every forward of ``module`` in train mode (the training step's calls)."""
    seen = []
    module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()) if m.training else None)
    return seen


def weights(m: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in m.state_dict().values()]


def all_equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def twin(m: nn.Module) -> nn.Module:
    """A copy for the forwards of a hand computation: the model's batch-norm statistics (which autograd
    holds for the step's backward) stay as training leaves them."""
    return copy.deepcopy(m)


def logged(run, tag: str) -> list[tuple[int, float]]:
    return scalars(run.out_dir, tag)


def input_grad(D: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """d sum(D(x)) / dx, per sample flattened."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x, None).sum(), x)
    return g.flatten(1)


def by_hand_on_d_loss(hook, hand):
    """Records (step, loss in, loss out, what the trick logged, hand(ctx, a copy of D)) at each D step;
    ``hand`` may replay the trick's random draws: it runs from the RNG state the trick started from."""
    calls, inner = [], hook.on_d_loss

    def wrapper(loss, ctx):
        rng = torch.get_rng_state()
        out = inner(loss, ctx)
        after = torch.get_rng_state()
        torch.set_rng_state(rng)
        expected = hand(ctx, twin(ctx.D))
        torch.set_rng_state(after)
        calls.append((ctx.step, loss.item(), out.item(), ctx.logs.get(f"trick/{hook.name}/value"), float(expected)))
        return out

    hook.on_d_loss = wrapper
    return calls


def targets_seen(run):
    """The targets the loss gets in the D step and in the G step."""
    d, g = spy(run.loss, "d_loss"), spy(run.loss, "g_loss")
    return lambda: ([args[2] for args, _ in d], [args[1] for args, _ in g])


# --- labels ---------------------------------------------------------------------------------------

def arm_label_smoothing(run, trick):
    seen = targets_seen(run)

    def check():
        d, g = seen()
        assert [(t.real, t.fake) for t in d] == [(pytest.approx(0.9), 0.0)] * STEPS  # one-sided: fake stays 0
        assert [t.gen for t in g] == [1.0] * STEPS
    return check


def arm_soft_labels(run, trick):
    seen = targets_seen(run)

    def check():
        d, _ = seen()
        real, fake = torch.stack([t.real for t in d]), torch.stack([t.fake for t in d])  # lsgan: 0-1 coding
        assert real.shape == fake.shape == (STEPS, B)
        assert 0.7 <= real.min() and real.max() <= 1.2 and real.mean().item() == pytest.approx(0.95, abs=0.06)
        assert 0.0 <= fake.min() and fake.max() <= 0.3 and fake.mean().item() == pytest.approx(0.15, abs=0.04)
        assert real.std() > 0.1 and fake.std() > 0.05  # every sample draws its own (U[0.7, 1.2]: std 0.14)
    return check


def arm_label_flip(run, trick):
    seen = targets_seen(run)

    def check():
        d, g = seen()
        real, fake = torch.stack([t.real for t in d]), torch.stack([t.fake for t in d])
        assert set(real.unique().tolist()) == set(fake.unique().tolist()) == {0.0, 1.0}
        assert (real == 0).float().mean().item() == pytest.approx(0.3, abs=0.15)  # p = 0.3 of 48 per side
        assert (fake == 1).float().mean().item() == pytest.approx(0.3, abs=0.15)
        # loss=gan: G's loss is minus D's on the fakes, so it sees flipped fake targets too
        assert any((t.fake == 1).any() for t in g)
    return check


def arm_label_swap(run, trick):
    seen = targets_seen(run)

    def check():
        d, g = seen()
        assert [(t.real, t.fake) for t in d] == [(0.0, 1.0)] * STEPS and [t.gen for t in g] == [0.0] * STEPS
    return check


# --- noise ----------------------------------------------------------------------------------------

def arm_instance_noise(run, trick):
    raw, fakes, seen = spy(run.data, "sample"), training_outputs(run.G), first_inputs(run.D)

    def check():
        assert len(seen) == 3 * STEPS  # per step: D(real), D(fake) in D's step, D(fake) in G's
        for s in range(STEPS):
            std = 0.1 * (1 - s / STEPS)  # anneal_steps = train.steps
            noise = [seen[3 * s] - raw[s][1][0], seen[3 * s + 1] - fakes[s], seen[3 * s + 2] - fakes[s]]
            for n in noise:
                assert n.std().item() == pytest.approx(std, rel=0.05) and abs(n.mean().item()) < 0.1 * std
            assert not torch.equal(noise[1], noise[2])  # fresh noise for each batch D sees
        # the logged std is the schedule's at the logged step: the noise step 3 trained with, then 0
        assert logged(run, "trick/instance_noise/std") == [(3, pytest.approx(0.05)), (6, 0.0)]
    return check


def layer_residuals(G: nn.Module) -> list[tuple[bool, torch.Tensor, torch.Tensor]]:
    """For each hidden ReLU of G: (training, what the next layer gets, the ReLU's own output). Registered
    after the trick's hooks, so it sees their result; the ReLUs are in-place: their input is relu(x)."""
    seen = []
    relus = [m for m in G.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 2
    for m in relus:
        m.register_forward_hook(lambda m, args, out: seen.append((m.training, out.detach().clone(), F.relu(args[0]).detach())))
    return seen


def arm_g_layer_noise(run, trick):
    seen = layer_residuals(run.G)

    def check():
        train_calls = [out - clean for training, out, clean in seen if training]
        eval_calls = [out - clean for training, out, clean in seen if not training]
        assert len(train_calls) == 2 * STEPS and eval_calls  # the sample grids run G in eval mode
        assert all(r.std().item() == pytest.approx(0.1, rel=0.05) for r in train_calls)
        assert all(not r.any() for r in eval_calls)  # samples are clean
        assert logged(run, "trick/g_layer_noise/std") == [(3, pytest.approx(0.1)), (6, pytest.approx(0.1))]
    return check


def arm_g_dropout(run, trick):
    seen = layer_residuals(run.G)

    def check():
        assert {training for training, _, _ in seen} == {True, False}  # on at sample time too
        for _, out, clean in seen:
            kept = out != 0
            torch.testing.assert_close(out, 2 * clean * kept)  # survivors scaled by 1 / (1 - p)
            dropped = (~kept & (clean != 0)).sum() / (clean != 0).sum()
            assert dropped.item() == pytest.approx(0.5, abs=0.05)
    return check


def arm_latent_prior(run, trick):
    zs = first_inputs(run.G)

    def check():
        z = torch.cat(zs)
        assert z.shape == (STEPS * B, 100) and z.std(0).min() > 0.5  # fresh latents ...
        torch.testing.assert_close(z.norm(dim=1), torch.full((STEPS * B,), 10.0))  # ... on the sphere of radius sqrt(dim)
        torch.testing.assert_close(run.fixed_z.norm(dim=1), torch.full((len(run.fixed_z),), 10.0))
    return check


def arm_temperature_anneal(run, trick):
    (layer,) = [m for m in run.G.modules() if type(m).__name__ == "RelaxedBernoulli"]
    temps = []
    layer.register_forward_pre_hook(lambda m, args: temps.append(m.temperature) if m.training else None)

    def check():
        assert temps == [pytest.approx(max(0.5, math.exp(-0.2 * s))) for s in range(STEPS)]  # 1, 0.82, 0.67, 0.55, 0.5, 0.5
        assert logged(run, "trick/temperature_anneal/temperature") == [(3, pytest.approx(math.exp(-0.6))), (6, 0.5)]
    return check


# --- penalties ------------------------------------------------------------------------------------

def arm_gradient_penalty(run, trick):
    def hand(ctx, D):  # Gulrajani et al. 2017, Alg. 1: x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1] per sample
        eps = torch.rand(B, 1, 1, 1)
        g = input_grad(D, eps * ctx.real + (1 - eps) * ctx.fake)
        return ((g.norm(dim=1) - 1) ** 2).mean()

    calls = by_hand_on_d_loss(trick, hand)
    return lambda: penalty_added(run, calls, weight=10.0)


def arm_r1(run, trick):
    calls = by_hand_on_d_loss(trick, lambda ctx, D: input_grad(D, ctx.real).pow(2).sum(1).mean())
    return lambda: penalty_added(run, calls, weight=10.0 / 2)


def arm_dragan(run, trick):
    def hand(ctx, D):  # x + alpha * delta, delta ~ U(0, c std(x)) per entry, alpha ~ U(0, 1) per sample
        delta = 0.5 * ctx.real.std() * torch.rand_like(ctx.real)
        alpha = torch.rand(B, 1, 1, 1)
        return ((input_grad(D, ctx.real + alpha * delta).norm(dim=1) - 1) ** 2).mean()

    calls = by_hand_on_d_loss(trick, hand)
    return lambda: penalty_added(run, calls, weight=10.0)


def penalty_added(run, calls, weight: float):
    assert len(calls) == STEPS
    for step, loss_in, loss_out, value, hand in calls:
        assert hand > 0 and value.item() == pytest.approx(hand, rel=1e-4)
        assert loss_out - loss_in == pytest.approx(weight * hand, rel=1e-3, abs=1e-6), step
    name = run.tricks[0].name
    assert logged(run, f"trick/{name}/value") == [(3, pytest.approx(calls[2][4], rel=1e-4)), (6, pytest.approx(calls[5][4], rel=1e-4))]


def arm_weight_clip(run, trick):
    before = max(p.detach().abs().max().item() for p in run.D.parameters())
    after, inner = [], trick.after_d_step

    def clipped(step):
        inner(step)
        after.append(max(p.detach().abs().max().item() for p in run.D.parameters()))

    trick.after_d_step = clipped

    def check():
        assert before > 0.01  # D starts outside the box (batch-norm gains are 1) ...
        assert after == [pytest.approx(0.01)] * STEPS  # ... and is on its edge, never outside, after every D step
        params = torch.cat([p.detach().flatten() for p in run.D.parameters()])
        edge = (params.abs() >= 0.01 * 0.999).float().mean().item()
        assert logged(run, "trick/weight_clip/at_clip_fraction")[-1] == (6, pytest.approx(edge))
    return check


def orthogonality_by_hand(G: nn.Module) -> float:
    """sum over G's layers of the squared off-diagonal entries of W W^T, W's rows its filters."""
    total = 0.0
    for m in G.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            w = m.weight.detach().double()
            w = (w.transpose(0, 1) if isinstance(m, nn.ConvTranspose2d) else w).flatten(1)
            gram = w @ w.T
            total += (gram - torch.diag(gram.diagonal())).pow(2).sum().item()
    return total


def arm_orthogonal_reg(run, trick):
    calls, inner = [], trick.on_g_loss

    def wrapper(loss, ctx):
        hand = orthogonality_by_hand(ctx.G)
        out = inner(loss, ctx)
        calls.append((loss.item(), out.item(), ctx.logs["trick/orthogonal_reg/value"].item(), hand))
        return out

    trick.on_g_loss = wrapper

    def check():
        assert len(calls) == STEPS
        for loss_in, loss_out, value, hand in calls:
            assert value == pytest.approx(hand, rel=1e-4)
            assert loss_out - loss_in == pytest.approx(1e-4 * hand, rel=0.01)  # beta = 1e-4
    return check


def params(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


def arm_historical_averaging(run, trick):
    models = {"d": run.D, "g": run.G}
    past = {who: [params(m)] for who, m in models.items()}  # every value each player's parameters have had
    calls = []
    for who in ("d", "g"):
        after, on_loss = f"after_{who}_step", f"on_{who}_loss"
        inner_after, inner_loss = getattr(trick, after), getattr(trick, on_loss)

        def stepped(step, who=who, inner=inner_after):
            inner(step)
            past[who].append(params(models[who]))

        def loss_term(loss, ctx, who=who, inner=inner_loss):
            avg = [torch.stack(history).mean(0) for history in zip(*past[who])]
            hand = sum(((p.detach() - a) ** 2).sum() for p, a in zip(models[who].parameters(), avg)).item()
            out = inner(loss, ctx)
            calls.append((who, ctx.step, out.item() - loss.item(), hand))
            return out

        setattr(trick, after, stepped)
        setattr(trick, on_loss, loss_term)

    def check():
        assert [(who, step) for who, step, _, _ in calls] == [(w, s) for s in range(STEPS) for w in ("d", "g")]
        for who, step, added, hand in calls:
            weight = 0.01 * (1 - step / STEPS)  # decay_steps = train.steps
            assert (hand > 0) == (step > 0)  # at step 0 the average is the start itself
            assert added == pytest.approx(weight * hand, rel=0.05, abs=1e-8), (who, step)
        assert logged(run, "trick/historical_averaging/weight") == [(3, pytest.approx(0.005)), (6, 0.0)]
    return check


# --- objectives -----------------------------------------------------------------------------------

def arm_feature_matching(run, trick):
    calls, inner = [], trick.on_g_loss

    def wrapper(loss, ctx):
        with torch.no_grad():
            D = twin(ctx.D)
            f_real, f_fake = D.features(ctx.real), D.features(ctx.fake)
        hand = (f_real.mean(0) - f_fake.mean(0)).pow(2).mean().item()
        out = inner(loss, ctx)
        calls.append((loss.item(), out.item(), ctx.logs["trick/feature_matching/value"].item(), hand))
        return out

    trick.on_g_loss = wrapper

    def check():
        assert len(calls) == STEPS
        for adversarial, loss_g, value, hand in calls:
            assert loss_g == pytest.approx(hand, rel=1e-4) and value == pytest.approx(hand, rel=1e-4)  # replace: G's whole loss
            assert abs(loss_g - adversarial) > 0.1  # not the adversarial loss it replaced
        assert logged(run, "loss/g")[-1] == (6, pytest.approx(calls[-1][3], rel=1e-4))
    return check


def arm_unrolled(run, trick):
    calls, inner = [], trick.on_g_loss

    def by_hand(ctx):
        """G's loss against a copy of D after 5 steps of torch's own Adam, from D's optimiser state."""
        D = twin(ctx.D).requires_grad_(True)
        opt = torch.optim.Adam(D.parameters())
        opt.load_state_dict(copy.deepcopy(run.opt_d.state_dict()))  # lr, betas, moments: a copy (loading shares tensors)
        t = run.loss.targets(B, torch.device("cpu"))
        real, fake = ctx.real.detach(), ctx.fake.detach()
        for _ in range(5):
            opt.zero_grad()
            run.loss.d_loss(D(real, None), D(fake, None), t).backward()
            opt.step()
        with torch.no_grad():
            return run.loss.g_loss(D(fake, None), t).item()

    def wrapper(loss, ctx):
        hand = by_hand(ctx)
        out = inner(loss, ctx)
        calls.append((loss.item(), out.item(), hand))
        return out

    trick.on_g_loss = wrapper

    def check():
        assert len(calls) == STEPS
        for plain_loss, loss_g, hand in calls:
            assert loss_g == pytest.approx(hand, rel=1e-4) and abs(loss_g - plain_loss) > 1e-3
        assert logged(run, "trick/unrolled/plain_g_loss")[-1] == (6, pytest.approx(calls[-1][0], rel=1e-5))
    return check


def arm_acgan(run, trick):
    calls = []
    inner_d, inner_g = trick.on_d_loss, trick.on_g_loss

    def ce(logits, y):  # cross-entropy by hand: -log softmax at the label
        return -(logits - logits.logsumexp(1, keepdim=True)).gather(1, y[:, None]).mean()

    def on_d(loss, ctx):
        with torch.no_grad():
            D = twin(ctx.D)
            lr, lf = D.classify(ctx.real), D.classify(ctx.fake)
        out = inner_d(loss, ctx)
        acc = (lr.argmax(1) == ctx.y_real).float().mean().item()
        calls.append(("d", out.item() - loss.item(), 0.5 * (ce(lr, ctx.y_real) + ce(lf, ctx.y_fake)).item(), acc))
        return out

    def on_g(loss, ctx):
        with torch.no_grad():
            lf = twin(ctx.D).classify(ctx.fake)
        out = inner_g(loss, ctx)
        calls.append(("g", out.item() - loss.item(), 2.0 * ce(lf, ctx.y_fake).item(), None))
        return out

    trick.on_d_loss, trick.on_g_loss = on_d, on_g

    def check():
        assert [c[0] for c in calls] == ["d", "g"] * STEPS
        for who, added, hand, _ in calls:
            assert hand > 0.1 and added == pytest.approx(hand, rel=1e-4), who  # weight_d 0.5, weight_g 2
        d_acc = [acc for who, _, _, acc in calls if who == "d"]
        assert logged(run, "trick/acgan/acc_real") == [(3, pytest.approx(d_acc[2])), (6, pytest.approx(d_acc[5]))]
    return check


# --- memory ---------------------------------------------------------------------------------------

def arm_ema(run, trick):
    live = [weights(run.G)]  # G after each of its updates (the EMA starts as a copy of G)
    inner = trick.after_g_step

    def after(step):
        live.append(weights(run.G))
        inner(step)

    trick.after_g_step = after
    sampled = {"G": [], "ema": []}  # forwards outside training (sample grids)
    run.G.register_forward_hook(lambda m, a, out: None if m.training else sampled["G"].append(len(out)))
    trick.ema.register_forward_hook(lambda m, a, out: sampled["ema"].append(len(out)))

    def check():
        params = {k for k, _ in run.G.named_parameters()}
        keys = list(run.G.state_dict())
        avg = live[0]
        for w in live[1:]:
            avg = [0.5 * a + 0.5 * b for a, b in zip(avg, w)]  # decay 0.5
        ema = trick.ema.state_dict()
        for k, a, now in zip(keys, avg, live[-1]):
            expected = a if k in params else now  # buffers (batch-norm statistics) are copied
            torch.testing.assert_close(ema[k], expected, rtol=1e-5, atol=1e-7)
        assert not all(torch.equal(ema[k], v) for k, v in run.G.state_dict().items() if k in params)
        assert sampled["ema"] and not sampled["G"]  # the sample grids come from the average
        saved = checkpoint.load(run.out_dir)["G_sample"]
        assert all(torch.equal(saved[k], v) for k, v in ema.items())
        assert logged(run, "trick/ema/decay") == [(3, 0.5), (6, 0.5)]
    return check


def arm_experience_replay(run, trick):
    fakes, seen = training_outputs(run.G), first_inputs(run.D)

    def check():
        assert len(fakes) == STEPS and len(seen) == 3 * STEPS
        assert torch.equal(seen[1], fakes[0])  # the buffer is empty at first
        for s in range(1, STEPS):
            shown = seen[3 * s + 1]
            assert torch.equal(shown[:4], fakes[s][:4])  # ratio 0.5: the first half is this step's ...
            past = torch.cat(fakes[:s]).flatten(1)
            old = shown[4:].flatten(1)
            assert (old[:, None] == past[None]).all(2).any(1).all(), s  # ... the rest earlier steps' fakes
            assert torch.equal(seen[3 * s + 2], fakes[s])  # G's step sees its own fakes
        assert logged(run, "trick/experience_replay/fill") == [(3, 24 / 1024), (6, 48 / 1024)]
    return check


def arm_checkpoint_swap(run, trick):
    """every=3, keep=1, prob=1: snapshots after steps 2 and 5; steps 3-5 each swap in step 2's G and D."""
    end = [(weights(run.G), weights(run.D))]  # end[s + 1]: the players after step s
    g_in_d_step, d_in_g_step = [], []
    run.G.register_forward_pre_hook(lambda m, a: g_in_d_step.append(weights(m)) if m.training and not torch.is_grad_enabled() else None)
    run.D.register_forward_pre_hook(lambda m, a: d_in_g_step.append(weights(m)) if not next(m.parameters()).requires_grad else None)
    d_updated = []
    inner_d, inner_g = trick.after_d_step, trick.after_g_step

    def after_d(step):
        d_updated.append(weights(run.D))  # the live D after its update (the old one comes in below)
        inner_d(step)

    def after_g(step):
        inner_g(step)
        end.append((weights(run.G), weights(run.D)))

    trick.after_d_step, trick.after_g_step = after_d, after_g

    def check():
        assert len(g_in_d_step) == len(d_in_g_step) == STEPS and trick.swaps == 3
        for s in range(STEPS):
            if s < 3:  # no snapshot yet: the live players
                assert all_equal(g_in_d_step[s], end[s][0]) and all_equal(d_in_g_step[s], d_updated[s]), s
            else:  # D trains on the old G's fakes, G against the old D
                assert all_equal(g_in_d_step[s], end[3][0]) and all_equal(d_in_g_step[s], end[3][1]), s
                assert not all_equal(d_in_g_step[s], d_updated[s]), s
        assert not all_equal(g_in_d_step[4], end[4][0]) and not all_equal(g_in_d_step[5], end[5][0])  # G had moved on
        assert all_equal(weights(run.G), end[-1][0]) and all_equal(weights(run.D), end[-1][1])  # the live weights are back
        assert logged(run, "trick/checkpoint_swap/swaps") == [(3, 0.0), (6, 3.0)]
    return check


# --- architecture ---------------------------------------------------------------------------------

def arm_spectral_norm(run, trick):
    def check():
        layers = [(n, m) for n, m in run.D.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert len(layers) == 3 and all(parametrize.is_parametrized(m, "weight") for _, m in layers)
        assert not any(parametrize.is_parametrized(m) for m in run.G.modules())  # generator: false
        run.D.eval()  # read the weights without a power iteration
        last = dict(logged_last(run, "trick/spectral_norm/sigma/"))
        for name, m in layers:
            w, raw = m.weight.detach().flatten(1), m.parametrizations.weight.original.detach().flatten(1)
            sigma, sigma_raw = torch.linalg.matrix_norm(w, 2).item(), torch.linalg.matrix_norm(raw, 2).item()
            assert sigma == pytest.approx(1.0, abs=0.05) and abs(sigma_raw - 1) > 0.1, name  # W / sigma(W) ~ 1 ...
            torch.testing.assert_close(w * sigma_raw, raw, rtol=0.05, atol=1e-4)  # ... of the raw weight
            assert last[name] == pytest.approx(sigma, rel=1e-4)
    return check


def logged_last(run, prefix: str) -> list[tuple[str, float]]:
    acc = read_events(run.out_dir)
    return [(t[len(prefix):], acc.Scalars(t)[-1].value) for t in acc.Tags()["scalars"] if t.startswith(prefix)]


def batch_layer(run, kind: str):
    """The layer a batch trick appended to D's body: its (input, output) at every training forward."""
    layer = run.D.body[-1]
    assert type(layer).__name__ == kind
    seen = []
    layer.register_forward_hook(lambda m, a, out: seen.append((a[0].detach().clone(), out.detach().clone(), m)) if m.training else None)
    return layer, seen


def arm_minibatch_discrimination(run, trick):
    layer, seen = batch_layer(run, "MinibatchDiscriminationLayer")
    T = []
    layer.register_forward_pre_hook(lambda m, a: T.append(m.T.weight.detach().clone()) if m.training else None)

    def check():
        assert run.D.head.in_features == 64 * 7 * 7 + 50 and len(seen) == 3 * STEPS
        for (f, out, _), t in zip(seen, T):
            M = (f @ t.T).view(B, 50, 5)  # B kernels of dimension C
            o = torch.stack([sum(torch.exp(-(M[i] - M[j]).abs().sum(1)) for j in range(B) if j != i) for i in range(B)])
            assert torch.equal(out[:, :-50], f)
            torch.testing.assert_close(out[:, -50:], o)
    return check


def arm_minibatch_stddev(run, trick):
    _, seen = batch_layer(run, "MinibatchStddevLayer")

    def check():
        assert run.D.head.in_features == 64 * 7 * 7 + 1 and len(seen) == 3 * STEPS
        for f, out, _ in seen:
            # groups of 4: sample i with the samples i +- 2k (ProGAN's layout); the features' std over the group, averaged
            hand = torch.stack([(f[i % 2::2].var(0, unbiased=False) + 1e-8).sqrt().mean() for i in range(B)])
            assert torch.equal(out[:, :-1], f)
            torch.testing.assert_close(out[:, -1], hand)
    return check


def arm_pacgan(run, trick):
    first = run.D.body[0]
    raw, fakes = spy(run.data, "sample"), training_outputs(run.G)
    d_in, packed, d_out = first_inputs(run.D), first_inputs(first), training_outputs(run.D)

    def check():
        assert first.in_channels == 2 and len(d_in) == len(packed) == 3 * STEPS
        for i, (x, p, o) in enumerate(zip(d_in, packed, d_out)):
            s, kind = divmod(i, 3)
            assert torch.equal(x, raw[s][1][0] if kind == 0 else fakes[s])  # packs are all real or all fake
            assert torch.equal(p, torch.cat([x[0::2], x[1::2]], dim=1))  # samples 2k, 2k+1 side by side in channels
            assert o.shape == (B // 2,)  # one logit per pack
    return check


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x (C, H, W) moved dy down and dx right, zeros coming in."""
    out = torch.zeros_like(x)
    H, W = x.shape[1:]
    out[:, max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = x[:, max(-dy, 0):H - max(dy, 0), max(-dx, 0):W - max(dx, 0)]
    return out


def arm_diffaugment(run, trick):
    raw, fakes, seen = spy(run.data, "sample"), training_outputs(run.G), first_inputs(run.D)

    def check():
        assert len(seen) == 3 * STEPS
        moves = []
        for i, x in enumerate(seen):
            s, kind = divmod(i, 3)
            src = raw[s][1][0] if kind == 0 else fakes[s]
            for a, b in zip(src, x):  # each sample moved by whole pixels, at most 0.125 * 28 -> 4
                found = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5) if torch.equal(shifted(a, dy, dx), b)]
                assert found, (s, kind)
                moves.append(found[0])
        assert len(set(moves)) > 20  # fresh draws per sample and per batch (81 possible)
    return check


def arm_virtual_batch_norm(run, trick):
    vbn = [m for m in run.G.modules() if type(m).__name__ == "VirtualBatchNorm"]
    rows = []
    for m in vbn:
        m.register_forward_pre_hook(lambda m, a: rows.append(a[0].shape[0]) if m.training else None)

    def check():
        assert len(vbn) == 2 and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in run.G.modules())
        assert rows == [64 + B] * (2 * STEPS)  # every training forward runs the 64 reference latents first
        run.G.train()
        z = torch.randn(B, 100)
        with torch.no_grad():
            torch.testing.assert_close(run.G(z)[:2], run.G(z[:2]))  # a sample does not depend on its batch
    return check


def arm_ada(run, trick):
    raw, seen = spy(run.data, "sample"), first_inputs(run.D)

    def check():  # p fixed at 1: every op applies to every image D sees, so no real batch reaches D as it was
        assert len(seen) == 3 * STEPS
        for s in range(STEPS):
            real = raw[s][1][0]
            assert seen[3 * s].shape == real.shape and not torch.equal(seen[3 * s], real)
        assert [v for _, v in logged(run, "trick/ada/p")] == [1.0, 1.0]
    return check


def arm_path_length(run, trick):
    calls, inner = [], trick.on_g_loss

    def wrapper(loss, ctx):
        out = inner(loss, ctx)
        calls.append((loss.item(), out.item(), None if trick._last is None else trick._last.item()))
        return out

    trick.on_g_loss = wrapper

    def check():  # lazy: on G steps 0 and 4 of 6, G's loss gains every * weight * the penalty; else nothing
        assert len(calls) == STEPS
        for i, (before, after, last) in enumerate(calls):
            if i % 4 == 0:
                assert last > 0 and after - before == pytest.approx(4 * 2.0 * last, rel=1e-4)
            else:
                assert after == before
        assert trick.pl_mean.item() > 0  # the running mean of the lengths moved off 0
    return check


ARM = {name[len("arm_"):]: f for name, f in globals().items() if name.startswith("arm_")}


def test_every_trick_has_an_end_to_end_check():
    assert sorted(ARM) == TRICKS


@pytest.mark.slow
@pytest.mark.parametrize("name", TRICKS)
def test_each_trick_trains_end_to_end_and_does_what_it_says(name, cfg_factory):
    torch.manual_seed(0)
    run = build_run(cfg_factory(f"tricks=[{name}]", f"loss={LOSS.get(name, 'nsgan')}", f"train.steps={STEPS}",
                                "train.log_every=3", *NEEDS.get(name, "seed=0").split(), *EXTRA.get(name, [])))
    (trick,) = run.tricks
    check = ARM[name](run, trick)
    final = train(run)
    assert final["status"] == "done"
    check()
