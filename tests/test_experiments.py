"""The presets in conf/experiment: each composes and builds, carries its paper's settings into the
built run, and (offline ones) trains end to end; the sweep preset expands to one job per value."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from ganexp.build import build_run
from ganexp.sample.rebuild import load_generator
from ganexp.engine import train
from ganexp.errors import DataError
from ganexp.losses import GAN, LSGAN, NSGAN, WGAN, WGANGP, Hinge
from ganexp.metrics.modes import mode_coverage
from tests.conftest import CONF, DOWNLOAD, ENV, FIX, GANEXP, TINY, adam, docs_papers, fake_lmdb, make_cfg, options, plain, preset_run, read_events

PRESETS = options("experiment")
OFFLINE = [p for p in PRESETS if p not in DOWNLOAD]


#: docs/experiments.md's table: each preset's row and the papers it names.
PAPERS = docs_papers("experiments.md")


def test_the_expected_presets_exist():
    assert {"grid25_mlp", "grid25_mlp_eval", "swiss_roll_wgan_gp", "iris_mlp", "digits_lsgan", "digits_wgan",
            "digits_wgan_gp", "digits_cgan", "digits_sngan", "digits_improved", "digits_ganhacks",
            "stacked_mnist_modes", "ring8_losses", *DOWNLOAD} <= set(PRESETS)
    assert set(PAPERS) == set(PRESETS), "docs/experiments.md lists every preset, and only those"


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_cites_a_paper_and_builds(name, tmp_path, monkeypatch):
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n# "), "first a package line, then what it reproduces"
    comment = plain(" ".join(ln.lstrip("#") for ln in text.splitlines()[1:] if ln.startswith("#")))
    assert PAPERS.get(name), f"docs/experiments.md has a row for {name} naming its paper"
    assert [p for p in PAPERS[name] if p not in comment] == [], "the comment cites the papers docs/experiments.md names"
    run = preset_run(name, tmp_path, monkeypatch)
    z, y = run.latent.sample(4)
    x = run.G(z, y)
    assert x.shape[1:] == run.info.shape and run.D(x, y).shape == (4 // getattr(run.D, "pack", 1),)  # pacgan: per pack


@pytest.mark.parametrize("name", sorted(DOWNLOAD))
def test_download_presets_without_files_say_what_to_do(name, tmp_path, monkeypatch):
    if DOWNLOAD[name] == "lsun":
        monkeypatch.setitem(sys.modules, "lmdb", fake_lmdb({}))
    with pytest.raises(DataError) as e:
        build_run(make_cfg([f"experiment={name}", f"dataset.root={tmp_path}"], tmp_path / "run"))
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path) in msg
    assert msg.endswith(FIX) or "download" in msg


def rmsprop(opt, lr):
    return isinstance(opt, torch.optim.RMSprop) and opt.param_groups[0]["lr"] == pytest.approx(lr)


def layers(module: nn.Module, kind) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, kind)]


def widths(module: nn.Module) -> list[int]:
    return [m.out_features for m in layers(module, nn.Linear)]


def test_digits_wgan_is_arjovsky_et_al(tmp_path, monkeypatch):
    run = preset_run("digits_wgan", tmp_path, monkeypatch)
    assert type(run.loss) is WGAN and run.loss.clip == 0.01
    assert rmsprop(run.opt_d, 5e-5) and rmsprop(run.opt_g, 5e-5)
    assert run.schedule.d_steps == 5 and run.schedule.g_steps == 1 and run.info.shape == (1, 28, 28)
    train(run)
    assert int(next(iter(run.opt_d.state.values()))["step"]) == 5 * 4  # 5 critic steps per G step
    assert max(p.abs().max().item() for p in run.D.parameters()) <= 0.01  # clipped after each one


def test_digits_wgan_gp_is_gulrajani_et_al(tmp_path, monkeypatch):
    run = preset_run("digits_wgan_gp", tmp_path, monkeypatch)
    assert type(run.loss) is WGANGP and run.loss.gp_weight == 10.0
    assert adam(run.opt_d, 1e-4, (0.0, 0.9)) and adam(run.opt_g, 1e-4, (0.0, 0.9)) and run.schedule.d_steps == 5
    # layer norm (one group per sample), not batch norm: the penalty is per sample
    assert not layers(run.D, nn.modules.batchnorm._BatchNorm) and all(m.num_groups == 1 for m in layers(run.D, nn.GroupNorm))
    assert layers(run.D, nn.GroupNorm)


def test_digits_lsgan_uses_the_0_1_coding_and_rmsprop(tmp_path, monkeypatch):
    run = preset_run("digits_lsgan", tmp_path, monkeypatch)
    t = run.loss.targets(2, run.device)
    assert type(run.loss) is LSGAN and (t.real, t.fake, t.gen) == (1.0, 0.0, 1.0)
    assert rmsprop(run.opt_d, 1e-4) and rmsprop(run.opt_g, 1e-4)
    assert run.loss.d_loss(torch.ones(3), torch.zeros(3), t) == 0  # D's optimum for Eq. 9


def test_digits_sngan_normalises_every_d_layer_with_hinge_and_ttur(tmp_path, monkeypatch):
    run = preset_run("digits_sngan", tmp_path, monkeypatch)
    assert type(run.loss) is Hinge and run.schedule.d_steps == 1
    assert adam(run.opt_g, 1e-4, (0.0, 0.9)) and adam(run.opt_d, 4e-4, (0.0, 0.9))
    weighted = layers(run.D, (nn.Conv2d, nn.Linear))
    assert weighted and all(parametrize.is_parametrized(m, "weight") for m in weighted)
    assert not layers(run.D, nn.modules.batchnorm._BatchNorm)
    assert not any(parametrize.is_parametrized(m) for m in run.G.modules())


def test_digits_improved_has_the_five_salimans_tricks(tmp_path, monkeypatch):
    run = preset_run("digits_improved", tmp_path, monkeypatch)
    assert type(run.loss) is NSGAN
    assert [t.name for t in run.tricks] == ["feature_matching", "minibatch_discrimination", "historical_averaging",
                                            "label_smoothing", "virtual_batch_norm"]
    by = {t.name: t for t in run.tricks}
    assert by["label_smoothing"].real_target == 0.9 and by["feature_matching"].replace is False
    assert type(run.D.body[-1]).__name__ == "MinibatchDiscriminationLayer"
    assert layers(run.G, nn.Module) and any(type(m).__name__ == "VirtualBatchNorm" for m in run.G.modules())


def test_digits_ganhacks_has_its_tricks_and_layers(tmp_path, monkeypatch):
    run = preset_run("digits_ganhacks", tmp_path, monkeypatch)
    assert {t.name for t in run.tricks} == {"soft_labels", "label_flip", "experience_replay", "instance_noise", "g_dropout"}
    assert layers(run.G, nn.PixelShuffle) and layers(run.D, nn.AvgPool2d)
    z, y = run.latent.sample(2)
    G = run.G.eval()
    assert not torch.equal(G(z, y), G(z, y))  # dropout in G at sample time too (#17)
    assert adam(run.opt_g, 2e-4, (0.5, 0.999)) and adam(run.opt_d, 2e-4, (0.5, 0.999))


def test_digits_cgan_conditions_both_players_on_the_ten_digits(tmp_path, monkeypatch):
    run = preset_run("digits_cgan", tmp_path, monkeypatch)
    assert run.G.num_classes == run.D.num_classes == 10 and type(run.G).__name__ == "MLPGenerator"
    z, y = run.latent.sample(4)
    assert y is not None and run.fixed_y is not None and set(run.fixed_y.tolist()) == set(range(10))
    G = run.G.eval()
    assert not torch.allclose(G(z[:1].repeat(2, 1), torch.tensor([3, 7]))[0], G(z[:1].repeat(2, 1), torch.tensor([3, 7]))[1])


def test_grid25_mlp_is_pacgans_setup(tmp_path, monkeypatch):
    run = preset_run("grid25_mlp_eval", tmp_path, monkeypatch)
    assert type(run.loss) is NSGAN and run.latent.dim == 2 and run.info.shape == (2,)
    assert widths(run.G) == [400, 400, 400, 400, 2] and len(layers(run.G, nn.BatchNorm1d)) == 4
    assert widths(run.D)[:3] == [200, 200, 200]
    assert adam(run.opt_g, 1e-4, (0.8, 0.999)) and adam(run.opt_d, 1e-4, (0.8, 0.999))
    assert len(run.data.centers) == 25 and run.data.std == 0.05
    assert [type(e).__name__ for e in run.evaluators] == ["ModeCoverage", "KDEPlot"] and run.evaluators[0].n == 2500
    assert run.best_metric == ("modes_reverse_kl", "min")
    assert make_cfg(["experiment=grid25_mlp"], tiny=False).train.batch_size == 100


def test_swiss_roll_wgan_gp_is_the_toy_code(tmp_path, monkeypatch):
    run = preset_run("swiss_roll_wgan_gp", tmp_path, monkeypatch)
    assert type(run.loss) is WGANGP and run.loss.gp_weight == 0.1 and run.schedule.d_steps == 5
    assert widths(run.G) == [512, 512, 512, 2] and widths(run.D)[:3] == [512, 512, 512]
    assert adam(run.opt_d, 1e-4, (0.5, 0.9)) and adam(run.opt_g, 1e-4, (0.5, 0.9))
    assert run.info.name == "swiss_roll" and run.latent.dim == 2
    assert make_cfg(["experiment=swiss_roll_wgan_gp"], tiny=False).train.batch_size == 256


def test_iris_mlp_is_the_notes_minigan(tmp_path, monkeypatch):
    run = preset_run("iris_mlp", tmp_path, monkeypatch)
    assert type(run.loss) is GAN  # the saturating minimax loss, as the notes' code
    assert widths(run.G) == [25, 25, 2] and widths(run.D)[:2] == [25, 25] and layers(run.G, nn.ReLU)
    assert adam(run.opt_g, 1e-4, (0.9, 0.999)) and adam(run.opt_d, 2e-4, (0.9, 0.999))
    assert run.info.name == "iris" and len(run.data) == 150
    assert [type(e).__name__ for e in run.evaluators] == ["KDEPlot"]


def test_stacked_mnist_has_1000_modes_offline_and_counts_them(tmp_path, monkeypatch):
    run = preset_run("stacked_mnist_modes", tmp_path, monkeypatch)
    assert run.info.shape == (3, 28, 28) and run.info.num_classes == 1000 and run.latent.dim == 100
    assert [type(e).__name__ for e in run.evaluators] == ["StackedModes"] and run.evaluators[0].n == 26_000
    assert adam(run.opt_g, 2e-4, (0.5, 0.999)) and run.best_metric == ("stacked_modes", "max")
    assert make_cfg(["experiment=stacked_mnist_modes"], tiny=False).dataset.source == "digits"


@pytest.mark.parametrize("name, resolution, batch", [("dcgan_cifar10", 32, 128), ("dcgan_celeba", 64, 128),
                                                     ("dcgan_lsun", 64, 128)])
def test_dcgan_presets_are_radford_et_al(name, resolution, batch, tmp_path, monkeypatch):
    run = preset_run(name, tmp_path, monkeypatch)
    assert run.info.shape == (3, resolution, resolution) and type(run.loss) is NSGAN and run.latent.dim == 100
    first = layers(run.G, nn.ConvTranspose2d)[0]
    assert first.out_channels == 64 * 2 ** (int(math.log2(resolution)) - 3)  # 512 at 64x64: G 100-512-...-64-3
    assert layers(run.D, nn.Conv2d)[0].out_channels == 64
    assert adam(run.opt_g, 2e-4, (0.5, 0.999)) and adam(run.opt_d, 2e-4, (0.5, 0.999))
    assert make_cfg([f"experiment={name}"], tiny=False).train.batch_size == batch


#: Presets scored by 2D mode coverage while they train.
MODE_PRESETS = {"ring8_mlp_eval", "grid25_mlp_eval", "ring8_losses", "study_ring8_losses", "study_ring8_tricks", "ring8_pacgan",
                "ring8_pacgan_paper", "grid25_pacgan", "grid25_pacgan_paper", "ring8_unrolled_paper"}


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_presets_train_end_to_end(name, tmp_path, monkeypatch):
    # classifier metrics (stacked modes, fid_clf) first train a digit classifier: too slow for this suite
    slow = {"stacked_mnist_modes", "digits_mlp_eval", "study_digits_losses"}
    extra = ["metrics=[]", "optimized_metric=null"] if name in slow else ["eval.num_samples=64"]
    if name in MODE_PRESETS:  # one sampler batch (the engine samples in batches of 256)
        extra.append("eval.metrics.modes.num_samples=256")
    run = preset_run(name, tmp_path, monkeypatch, *extra)
    g0 = [p.detach().clone() for p in run.G.parameters()]
    final = train(run)
    saved = json.loads((run.out_dir / "metrics.json").read_text())
    acc = read_events(run.out_dir)
    scores = [k for k in final if k.startswith("metrics/")]
    for k in ("loss/d", "loss/g", *scores):  # the final losses and scores: in TensorBoard at the last step, and in metrics.json
        last = acc.Scalars(k)[-1]
        assert (last.step, last.value) == (4, pytest.approx(final[k], rel=1e-6)) and saved[k] == final[k], k
    assert saved["step"] == 4 and saved["status"] == "done"
    assert any(not torch.equal(a, b) for a, b in zip(g0, run.G.parameters()))
    assert any(type(e).__name__ == "ModeCoverage" for e in run.evaluators) == (name in MODE_PRESETS)
    if name in MODE_PRESETS:  # the logged scores are those of the final sampling G's 256 samples from seed 0
        G, latent, _ = load_generator(str(run.out_dir), device="cpu")
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(0)
            r = mode_coverage(G(*latent.sample(256)), run.data.centers, run.data.std)
        assert final["metrics/modes"] == r["modes"] and final["metrics/modes_hq_percent"] == pytest.approx(r["hq_percent"])
        assert final["metrics/modes_reverse_kl"] == pytest.approx(r["reverse_kl"])


def test_ring8_losses_carries_its_own_sweep():
    from hydra import compose, initialize_config_module

    with initialize_config_module("ganexp.conf", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=ring8_losses"], return_hydra_config=True)
    assert dict(cfg.hydra.sweeper.params) == {"loss": "gan,lsgan,wgan_gp"}
    assert cfg.dataset._target_.endswith("toy.ring") and "modes" in cfg.eval.metrics
    # without -m it is one run of ring8_mlp_eval
    assert cfg.loss._target_.endswith("LSGAN")


@pytest.mark.slow
def test_ring8_losses_sweep_runs_one_job_per_loss(tmp_path):
    r = subprocess.run([GANEXP, "train", "-m", "experiment=ring8_losses", *TINY, "eval.num_samples=64",
                        "hydra.sweep.dir=sweep"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    runs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert runs == ["0_loss-gan", "1_loss-lsgan", "2_loss-wgan_gp"]  # named by the swept values only
    losses = {n.split("loss-")[1]: n for n in runs}
    assert set(losses) == {"gan", "lsgan", "wgan_gp"}
    targets = {"gan": "losses.GAN", "lsgan": "losses.LSGAN", "wgan_gp": "losses.WGANGP"}
    for loss, n in losses.items():
        assert f"_target_: ganexp.{targets[loss]}\n" in (tmp_path / "sweep" / n / ".hydra" / "config.yaml").read_text()
        assert "metrics/modes" in read_events(tmp_path / "sweep" / n).Tags()["scalars"]


@pytest.mark.parametrize("overrides, kind, lr, betas, d_steps", [
    ([], torch.optim.Adam, 1.6e-3, (0.0, 0.99), 1),                        # model=dcgan picks adam_fast
    (["experiment=digits_best"], torch.optim.Adam, 8e-4, (0.0, 0.99), 1),  # adam_fast at the lr it was measured with
    (["optimizer=adam"], torch.optim.Adam, 2e-4, (0.5, 0.999), 1),         # an explicit choice wins
    (["model=mlp"], torch.optim.Adam, 2e-4, (0.5, 0.999), 1),              # other models keep Radford's Adam
    (["model=resnet"], torch.optim.Adam, 2e-4, (0.5, 0.999), 1),
    (["loss=wgan_gp"], torch.optim.Adam, 1e-4, (0.0, 0.9), 5),             # a loss's own preset beats the model's
    (["loss=wgan"], torch.optim.RMSprop, 5e-5, None, 5),
    (["experiment=digits_improved"], torch.optim.Adam, 2e-4, (0.5, 0.999), 1),  # presets keep their paper's
    (["experiment=study_digits_losses", "loss=wgan_gp"], torch.optim.Adam, 1e-4, (0.0, 0.9), 5),
])
def test_which_optimizer_a_run_gets(overrides, kind, lr, betas, d_steps, tmp_path):
    run = build_run(make_cfg(overrides, tmp_path))
    for opt in (run.opt_g, run.opt_d):
        assert isinstance(opt, kind) and opt.param_groups[0]["lr"] == pytest.approx(lr)
        if betas:
            assert tuple(opt.param_groups[0]["betas"]) == pytest.approx(betas)
    assert run.schedule.d_steps == d_steps


def test_digits_best_is_the_measured_recipe(tmp_path, monkeypatch):
    """The settings docs/experiments.md measured (3 seeds, classifier FID against its floor)."""
    run = preset_run("digits_best", tmp_path, monkeypatch)
    assert run.G.num_classes == 10 and run.info.name == "digits"
    assert adam(run.opt_g, 8e-4, (0.0, 0.99)) and adam(run.opt_d, 8e-4, (0.0, 0.99))
    assert run.lr_schedule.kind == "linear" and run.lr_schedule.steps == run.schedule.steps  # to 0 at the last step
    assert make_cfg(["experiment=digits_best"], tiny=False).train.steps == 12000
    tricks = {t.name: t for t in run.tricks}
    assert set(tricks) == {"r1", "ema"} and tricks["ema"].decay == 0.999
    assert (tricks["r1"].gamma, tricks["r1"].every) == (1.0, 4)
    assert type(run.loss) is NSGAN and run.best_metric == ("fid_clf", "min")
