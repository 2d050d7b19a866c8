"""Numbers a user relies on stay right: what a checkpoint's consumers draw, what a resume keeps,
what the evaluation records (issue 10, items 1-11). Each test failed on the code before its fix."""
import json

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from ganexp.engine import checkpoint
from ganexp.build import build_run
from ganexp.sample.rebuild import build_eval, load_generator
from ganexp.engine import train
from ganexp.errors import ConfigError, GanexpError
from ganexp.sample.evaluate import evaluate
from ganexp.sample.generate import sample
from ganexp.hooks import Hook
from ganexp.metrics.cache import compute_reference
from ganexp.metrics.evaluators import FID, KID
from ganexp.losses.critic import dragan_penalty
from ganexp.tricks.architecture import MinibatchStddevLayer
from tests.conftest import make_cfg

POINTS = ["dataset=ring8", "model=mlp", "latent.dim=2", "generator.hidden=[16]", "discriminator.hidden=[16]"]


def _eval_cfg(ckpt, **kw):
    base = {"ckpt": str(ckpt), "num_samples": None, "batch_size": 500, "device": "cpu", "ema": True,
            "cache_dir": "~/.cache/ganexp", "inception_weights": None, "out": None, "seed": 0, "n": 16,
            "mode": "grid", "label": None}
    return OmegaConf.create(base | kw)


# 1 -- the latent prior travels with the checkpoint --------------------------------------------

@pytest.mark.parametrize("prior, inside", [("uniform", lambda z: z.abs().max() <= 1.0),
                                            ("sphere", lambda z: torch.allclose(z.norm(dim=1), torch.full((len(z),), 2 ** 0.5)))])
def test_sample_and_eval_draw_from_the_prior_the_generator_trained_on(prior, inside, tmp_path):
    run = build_run(make_cfg([*POINTS, "tricks=[latent_prior]", f"tricks.latent_prior.prior={prior}"], tmp_path))
    assert run.latent.prior == prior
    train(run)
    _, latent, _ = load_generator(str(tmp_path), "cpu")
    assert latent.prior == prior
    z = latent.z(512)
    assert inside(z) and z.abs().max() > 0.5  # drawn from the prior, not N(0, I)
    _, ev_latent, *_ = build_eval(_eval_cfg(tmp_path), {})
    assert ev_latent.prior == prior


def test_old_checkpoints_without_the_latent_record_read_the_trick(tmp_path):
    train(build_run(make_cfg([*POINTS, "tricks=[latent_prior]", "tricks.latent_prior.prior=uniform"], tmp_path)))
    state = checkpoint.load(tmp_path)
    del state["latent"]
    checkpoint.save(tmp_path / "old.pt", state)
    assert load_generator(str(tmp_path / "old.pt"), "cpu")[1].prior == "uniform"


# 2 -- a new learning rate on resume takes effect -----------------------------------------------

def test_resume_applies_new_optimizer_settings_and_says_so(tmp_path, capsys):
    train(build_run(make_cfg(POINTS, tmp_path / "run")))
    resumed = build_run(make_cfg([*POINTS, "train.steps=6", "optimizer.d.lr=1e-3", "optimizer.g.betas=[0.1,0.9]",
                                  f"resume={tmp_path / 'run'}"], tmp_path / "x"))
    train(resumed)
    assert resumed.opt_d.param_groups[0]["lr"] == 1e-3 and resumed.opt_g.param_groups[0]["betas"] == (0.1, 0.9)
    saved = checkpoint.load(tmp_path / "run")
    assert saved["opt_d"]["param_groups"][0]["lr"] == 1e-3
    assert saved["opt_d"]["state"]  # the moments were restored, not reset
    out = capsys.readouterr().out
    assert "optimizer.d.lr 0.0002 -> 0.001" in out and "optimizer.g.betas" in out


# 3 -- schedules keep their launch length -----------------------------------------------------

def test_resume_keeps_schedules_that_were_written_as_train_steps(tmp_path, capsys):
    train(build_run(make_cfg([*POINTS, "tricks=[instance_noise,historical_averaging]"], tmp_path / "run")))
    resumed = build_run(make_cfg([*POINTS, "tricks=[instance_noise,historical_averaging]", "train.steps=8",
                                  f"resume={tmp_path / 'run'}"], tmp_path / "x"))
    noise, avg = resumed.tricks
    assert noise.anneal_steps == 4 and avg.decay_steps == 4  # ${train.steps} at launch, not 8
    assert noise.std_at(5) == 0.0  # the noise stays annealed away instead of jumping back up
    train(resumed)
    assert "resume keeps tricks.instance_noise.anneal_steps=4" in capsys.readouterr().out
    # an explicit value still wins
    again = build_run(make_cfg([*POINTS, "tricks=[instance_noise,historical_averaging]", "train.steps=12",
                                "tricks.instance_noise.anneal_steps=10", f"resume={tmp_path / 'run'}"], tmp_path / "x"))
    assert again.tricks[0].anneal_steps == 10 and again.tricks[1].decay_steps == 4


# 4 -- ckpt/best.pt survives a resume that does worse -------------------------------------------

class Scripted:
    """An evaluator returning a fixed value per step."""

    def __init__(self, values):
        self.values = values

    def __call__(self, sampler, step):
        return {"score": self.values[step]}


def test_best_checkpoint_is_not_replaced_by_a_worse_value_after_resume(tmp_path):
    values = {2: 1.0, 4: 0.5, 6: 0.9, 8: 0.4}
    run = build_run(make_cfg(POINTS, tmp_path / "run"))
    run.evaluators, run.best_metric, run.schedule.eval_every = [Scripted(values)], ("score", "min"), 2
    train(run)
    assert checkpoint.load(tmp_path / "run" / "ckpt" / "best.pt")["step"] == 4
    resumed = build_run(make_cfg([*POINTS, "train.steps=6", f"resume={tmp_path / 'run'}"], tmp_path / "x"))
    resumed.evaluators, resumed.best_metric, resumed.schedule.eval_every = [Scripted(values)], ("score", "min"), 2
    train(resumed)
    best = checkpoint.load(tmp_path / "run" / "ckpt" / "best.pt")
    assert best["step"] == 4 and best["best"]["score"] == 0.5  # 0.9 at step 6 is worse
    resumed = build_run(make_cfg([*POINTS, "train.steps=8", f"resume={tmp_path / 'run'}"], tmp_path / "x"))
    resumed.evaluators, resumed.best_metric, resumed.schedule.eval_every = [Scripted(values)], ("score", "min"), 2
    train(resumed)
    assert checkpoint.load(tmp_path / "run" / "ckpt" / "best.pt")["step"] == 8  # 0.4 beats it


# 5 -- minibatch stddev never degenerates to a constant ------------------------------------------

def test_minibatch_stddev_refuses_a_batch_its_group_does_not_divide(tmp_path):
    with pytest.raises(ConfigError, match="group_size=4 does not divide train.batch_size=9.*e.g. 12"):
        build_run(make_cfg([*POINTS, "tricks=[minibatch_stddev]", "train.batch_size=9"], tmp_path))


def test_minibatch_stddev_on_an_odd_batch_uses_the_largest_dividing_group():
    f = torch.randn(9, 5)
    out = MinibatchStddevLayer(4)(f)[:, -1]
    # group 3 (largest divisor of 9 not above 4); sample i is in group i % 3, as in ProGAN
    expected = torch.stack([f[[j, j + 3, j + 6]].var(0, unbiased=False).add(1e-8).sqrt().mean() for j in range(3)])
    assert torch.allclose(out, expected.repeat(3), atol=1e-6)
    prime = MinibatchStddevLayer(4)(torch.randn(7, 5))[:, -1]  # no divisor but 1: the whole batch is the group
    assert prime.std() < 1e-6 and prime[0] > 0.1


# 6 -- gradient penalties and batch norm ------------------------------------------------------

def _has(m: nn.Module, kind) -> bool:
    return any(isinstance(x, kind) for x in m.modules())


def test_wgan_gp_builds_its_critic_without_batch_statistics(tmp_path, capsys):
    run = build_run(make_cfg(["loss=wgan_gp"], tmp_path))
    assert not _has(run.D, nn.modules.batchnorm._BatchNorm) and _has(run.D, nn.GroupNorm)
    assert run.config["discriminator"]["norm"] == "layer"  # the run records what was built
    assert not run.notes
    assert _has(build_run(make_cfg(["loss=nsgan"], tmp_path)).D, nn.BatchNorm2d)


def test_batch_norm_with_a_per_sample_penalty_warns_once(tmp_path, capsys):
    chosen = build_run(make_cfg(["loss=wgan_gp", "discriminator.norm=batch"], tmp_path))
    assert _has(chosen.D, nn.BatchNorm2d) and len(chosen.notes) == 1 and "loss=wgan_gp" in chosen.notes[0]
    for trick in ("r1", "gradient_penalty", "dragan"):
        run = build_run(make_cfg(["loss=nsgan", f"tricks=[{trick}]"], tmp_path))  # nsgan: D keeps batch norm
        assert len(run.notes) == 1 and f"warning: {trick} penalises per-sample gradients" in run.notes[0]
        assert not build_run(make_cfg(["loss=nsgan", f"tricks=[{trick}]", "discriminator.norm=layer"], tmp_path)).notes
    train(run)
    assert capsys.readouterr().out.count("warning: dragan") == 1


# 7 -- `ganexp eval` records each metric's real sample count and keeps earlier results ------------

def test_eval_records_each_metrics_count_and_keeps_both_results(tmp_path):
    train(build_run(make_cfg(POINTS, tmp_path)))
    nodes = OmegaConf.create({"modes": {"_target_": "ganexp.metrics.evaluators.ModeCoverage", "name": "modes",
                                        "num_samples": 2500}})
    cfg = _eval_cfg(tmp_path)
    cfg.eval = {"metrics": nodes}
    _, own = evaluate(cfg)
    assert json.loads(own.read_text())["num_samples"] == {"modes": 2500}
    cfg.num_samples = 300
    _, forced = evaluate(cfg)
    assert json.loads(forced.read_text())["num_samples"] == {"modes": 300}  # the command line wins
    assert own != forced and own.is_file() and forced.is_file()
    assert forced.name == "last_step4_modes_n300.json"


# 8 -- the FID/KID floor is labelled with the size it was computed at ------------------------------

class Ext(nn.Module):
    key = "identity"

    def forward(self, x):
        return x.flatten(1), x.flatten(1)


class Real:
    """A stand-in dataset of points with an info name, for the reference cache."""

    def __init__(self, n):
        self.x = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
        self.info = type("Info", (), {"name": "pts", "as_dict": lambda self: {"name": "pts"}})()

    def __len__(self):
        return len(self.x)


@pytest.mark.parametrize("n, key", [(30, "fid_baseline"), (80, "fid_baseline_n50")])
def test_baseline_name_says_its_sample_size(n, key, monkeypatch):
    data = Real(100)
    monkeypatch.setattr("ganexp.metrics.cache.real", lambda d, total, bs: [d.x[:total]])
    ref = compute_reference(data, Ext(), n, 500)
    assert ref["n_baseline"] == min(n, 50) and ref["n_ref"] == min(n, 100)
    metric = FID.__new__(FID)
    metric.name, metric.n = "fid", n
    assert metric.baseline_key(ref) == key
    kid = KID.__new__(KID)
    kid.name, kid.n = "kid", n
    assert kid.baseline_key(ref) == key.replace("fid", "kid")


# 9 -- a label for an unconditional generator is refused ----------------------------------------

def test_sample_refuses_a_label_for_an_unconditional_model(tmp_path):
    train(build_run(make_cfg(POINTS, tmp_path)))
    with pytest.raises(ConfigError, match="label=3 needs a conditional generator"):
        sample(_eval_cfg(tmp_path, label=3))


# 10 -- DRAGAN's perturbation as the authors compute it -------------------------------------------

def test_dragan_penalty_matches_the_reference_interpolation_on_a_nonlinear_critic():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    critic = lambda x, y: D(x)  # noqa: E731
    real = torch.randn(16, 3)
    torch.manual_seed(1)
    got = dragan_penalty(critic, real, None, c=0.5)
    torch.manual_seed(1)
    x_p = real + 0.5 * real.std() * torch.rand_like(real)  # X_p = X + c std(X) U(0, 1)
    alpha = torch.rand(16, 1)  # one alpha per sample
    x_hat = (real + alpha * (x_p - real)).requires_grad_(True)
    (g,) = torch.autograd.grad(D(x_hat).sum(), x_hat)
    assert torch.allclose(got, (g.norm(dim=1) - 1).pow(2).mean(), atol=1e-6)


# 11 -- Ctrl-C while an old snapshot is swapped in saves the live weights ---------------------------

class InterruptWhileSwapped(Hook):
    """Records D right after its own step (before checkpoint_swap swaps the old D in), then
    interrupts the G step of ``at``, when the old D is in place."""

    name = "interrupt"

    def __init__(self, at: int):
        self.at, self.live_d = at, None

    def setup(self, run):
        self.D = run.D

    def after_d_step(self, step):
        self.live_d = {k: v.clone() for k, v in self.D.state_dict().items()}

    def on_g_loss(self, loss, ctx):
        if ctx.step == self.at:
            raise KeyboardInterrupt
        return loss


def test_interrupt_during_a_swap_saves_the_live_weights(tmp_path):
    run = build_run(make_cfg([*POINTS, "train.steps=10", "tricks=[checkpoint_swap]", "tricks.checkpoint_swap.every=1",
                              "tricks.checkpoint_swap.prob=1.0", "tricks.checkpoint_swap.swap=d"], tmp_path))
    spy = InterruptWhileSwapped(at=3)
    spy.setup(run.setup_context())
    run.tricks.insert(0, spy)  # before checkpoint_swap, whose swap must come last
    with pytest.raises(GanexpError, match="interrupted at step 3"):
        train(run)
    saved = checkpoint.load(tmp_path)["D"]
    swap = run.tricks[1]
    old = dict(zip(saved, swap.snapshots[-1]["D"]))
    assert all(torch.equal(saved[k], spy.live_d[k]) for k in saved)
    assert any(not torch.equal(saved[k], old[k]) for k in saved)  # not the swapped-in snapshot


def test_a_presets_settings_for_a_trick_the_command_line_dropped_are_ignored_with_a_note(tmp_path):
    run = build_run(make_cfg(["experiment=ring8_pacgan_paper", "tricks=[ema]", "train.batch_size=8"], tmp_path))
    assert [t.name for t in run.tricks] == ["ema"]
    assert "note: tricks.pacgan settings are ignored: pacgan is not in tricks=[...]" in run.notes
