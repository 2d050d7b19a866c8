"""End-to-end runs on CPU: TensorBoard contents, checkpoints, resume, errors."""
import json

import pytest
import torch

from ganexp.engine import checkpoint
from ganexp.build import build_run
from ganexp.engine import train
from ganexp.errors import CheckpointError, ConfigError, GanexpError, TrainingDiverged
from tests.conftest import make_cfg, options, read_events

LOSSES = options("loss")


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_trains_and_logs(loss, tmp_path):
    run = build_run(make_cfg([f"loss={loss}", "optimizer.d_steps=2"], tmp_path))
    final = train(run)
    acc = read_events(run.out_dir)
    scalars = set(acc.Tags()["scalars"])
    assert {"loss/d", "loss/g", "d/real", "d/fake", "grad_norm/g", "grad_norm/d", "lr/g", "lr/d"} <= scalars
    assert [e.step for e in acc.Scalars("loss/d")] == [2, 4]
    if loss == "wgan_gp":
        assert "loss/gp" in scalars
    img = acc.Images("samples/grid")[-1]
    assert img.step == 4 and img.width > 28
    assert (run.out_dir / "samples" / "step_0000004.png").is_file()
    saved = json.loads((run.out_dir / "metrics.json").read_text())
    assert saved["step"] == 4 and saved["loss/d"] == pytest.approx(final["loss/d"])
    state = checkpoint.load(run.out_dir)
    assert state["step"] == 4 and state["config"]["loss"]["_target_"].startswith("ganexp.losses")


def test_training_changes_both_players(tmp_path):
    run = build_run(make_cfg([], tmp_path))
    g0 = [p.detach().clone() for p in run.G.parameters()]
    d0 = [p.detach().clone() for p in run.D.parameters()]
    train(run)
    assert any(not torch.equal(a, b) for a, b in zip(g0, run.G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, run.D.parameters()))


def test_d_steps_per_g_step(tmp_path):
    run = build_run(make_cfg(["optimizer.d_steps=3"], tmp_path))
    train(run)
    # Adam counts its own steps: 4 G steps, 12 D steps
    g_state = next(iter(run.opt_g.state.values()))
    d_state = next(iter(run.opt_d.state.values()))
    assert int(g_state["step"]) == 4 and int(d_state["step"]) == 12


def test_2d_run_logs_a_scatter_plot_over_the_d_landscape(tmp_path):
    from ganexp.engine.visuals import d_landscape

    run = build_run(make_cfg(["dataset=ring8", "model=mlp", "latent.dim=2"], tmp_path))
    train(run)
    acc = read_events(run.out_dir)
    assert "samples/scatter" in acc.Tags()["images"]
    gx, gy, v = d_landscape(run.D, 3.0, n=5)
    assert gx[0, 0] == -3 and gy[0, 0] == -3 and gx[0, 4] == 3 and gy[4, 0] == 3  # rows go up in y
    run.D.eval()
    with torch.no_grad():
        assert torch.allclose(v[4, 0], run.D(torch.tensor([[-3.0, 3.0]]), None)[0])  # D at (x=-3, y=3)
        u = torch.linspace(-3, 3, 5)  # every cell: row i is y = u[i], column j is x = u[j]
        grid = torch.stack([u.repeat(5), u.repeat_interleave(5)], 1)
        torch.testing.assert_close(v, run.D(grid, None).view(5, 5))
    from ganexp.models import MLPDiscriminator

    assert d_landscape(MLPDiscriminator((2,), False, num_classes=3), 3.0) is None  # no single landscape


def test_resume_continues_exactly(tmp_path):
    """4 steps + resume to 8 gives the same weights as 8 steps straight (RNG state is restored)."""
    straight = build_run(make_cfg(["train.steps=8", "train.ckpt_every=4"], tmp_path / "straight"))
    straight_final = train(straight)
    first = build_run(make_cfg(["train.steps=4"], tmp_path / "split"))
    train(first)
    resumed = build_run(make_cfg(["train.steps=8", f"resume={tmp_path / 'split'}"], tmp_path / "ignored"))
    assert resumed.out_dir == tmp_path / "split"
    final = train(resumed)
    assert {k: final[k] for k in ("loss/d", "loss/g", "d/real", "d/fake")} == pytest.approx(
        {k: straight_final[k] for k in ("loss/d", "loss/g", "d/real", "d/fake")}, rel=1e-5)
    for a, b in zip([*straight.G.state_dict().values(), *straight.D.state_dict().values()],
                    [*resumed.G.state_dict().values(), *resumed.D.state_dict().values()]):
        torch.testing.assert_close(a, b)
    steps = [e.step for e in read_events(tmp_path / "split").Scalars("loss/g")]
    assert steps == [2, 4, 6, 8]
    done = build_run(make_cfg(["train.steps=8", f"resume={tmp_path / 'split'}"], tmp_path / "ignored"))
    with pytest.raises(GanexpError, match="already reached step 8 of train.steps=8"):
        train(done)
    assert json.loads((tmp_path / "split" / "metrics.json").read_text())["step"] == 8


def test_missing_and_corrupt_checkpoints_fail_in_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        build_run(make_cfg([f"resume={tmp_path / 'nope'}"], tmp_path))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt") as e:
        build_run(make_cfg([f"resume={bad}"], tmp_path))
    assert "\n" not in str(e.value)
    torch.save({"G": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="not a ganexp checkpoint"):
        checkpoint.load(tmp_path / "partial.pt")


def test_checkpoint_of_other_models_is_refused(tmp_path):
    train(build_run(make_cfg([], tmp_path / "dcgan")))
    with pytest.raises(GanexpError, match="does not fit this config: generator, discriminator differ"):
        train(build_run(make_cfg(["model=mlp", "train.steps=8", f"resume={tmp_path / 'dcgan'}"], tmp_path)))


def test_resume_refuses_a_different_game_but_takes_new_schedules(tmp_path):
    """A resumed run may change learning rates, train.* and trick settings, not the models, loss or data."""
    train(build_run(make_cfg(["loss=lsgan", "tricks=[instance_noise]"], tmp_path / "run")))
    resume = f"resume={tmp_path / 'run'}"
    for overrides, message in [
        (["loss=lsgan", "loss.a=-1", "tricks=[instance_noise]"], r"loss differs \(loss.a: checkpoint 0.0, now -1"),
        (["loss=nsgan", "tricks=[instance_noise]"], "loss differs"),
        (["loss=lsgan"], r"tricks differs \(tricks: checkpoint \['instance_noise'\], now \[\]\)"),
        (["loss=lsgan", "tricks=[instance_noise]", "latent.dim=8"], "generator, latent differ"),
        (["loss=lsgan", "tricks=[instance_noise]", "dataset=sklearn_digits"], "dataset differs"),
    ]:
        with pytest.raises(ConfigError, match=message) as e:
            build_run(make_cfg([*overrides, "train.steps=8", resume], tmp_path / "x"))
        assert "\n" not in str(e.value)
    run = build_run(make_cfg(["loss=lsgan", "tricks=[instance_noise]", "tricks.instance_noise.std=0.5",
                              "optimizer.d.lr=1e-4", "train.steps=8", resume], tmp_path / "x"))
    assert run.opt_d.param_groups[0]["lr"] == 1e-4
    assert train(run)["step"] == 8


def test_runs_saved_before_an_option_existed_still_resume(tmp_path):
    """Options added to ganexp after a run was saved are not 'differences' (they are absent from its config)."""
    train(build_run(make_cfg([], tmp_path / "run")))
    path = tmp_path / "run" / "ckpt" / "last.pt"
    state = checkpoint.load(path)
    del state["config"]["generator"]["cond"], state["config"]["dataset"]["binarize"]
    checkpoint.save(path, state)
    assert train(build_run(make_cfg(["train.steps=6", f"resume={tmp_path / 'run'}"], tmp_path / "x")))["step"] == 6
    with pytest.raises(ConfigError, match=r"generator differs \(generator.ngf"):
        build_run(make_cfg(["train.steps=8", "generator.ngf=8", f"resume={tmp_path / 'run'}"], tmp_path / "x"))


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path):
    run = build_run(make_cfg(["dataset=ring8", "model=mlp", "latent.dim=2"], tmp_path))
    train(run)
    good = checkpoint.load(run.out_dir)
    poisoned = build_run(make_cfg(["dataset=ring8", "model=mlp", "latent.dim=2", "train.steps=8",
                                   f"resume={run.out_dir}"], tmp_path / "x"))
    poisoned.data.x[:] = float("nan")
    with pytest.raises(TrainingDiverged, match="diverged at step 6") as e:
        train(poisoned)
    assert f"last good checkpoint {run.out_dir / 'ckpt' / 'last.pt'} is kept" in str(e.value)
    assert "\n" not in str(e.value)
    kept = checkpoint.load(run.out_dir)
    assert kept["step"] == good["step"] == 4
    for a, b in zip(kept["G"].values(), good["G"].values()):
        assert torch.equal(a, b)


def test_a_metric_that_fails_keeps_the_steps_trained_before_it(tmp_path):
    """An evaluation that raises (a metric's defect, a missing file) must not throw away the steps
    since the last checkpoint: last.pt holds the step it failed at, and the run resumes from it."""
    run = build_run(make_cfg(["dataset=ring8", "model=mlp", "latent.dim=2", "train.steps=12", "train.ckpt_every=100",
                              "eval.every=6", "metrics=[]"], tmp_path / "r"))

    def broken(sampler, step):
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")

    run.evaluators = [broken]
    with pytest.raises(ValueError, match="non-empty list"):
        train(run)
    assert checkpoint.load(run.out_dir)["step"] == 6
    again = build_run(make_cfg(["dataset=ring8", "model=mlp", "latent.dim=2", "train.steps=12", "metrics=[]",
                                f"resume={run.out_dir}"], tmp_path / "x"))
    assert train(again)["step"] == 12


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact."""
    path = tmp_path / "ckpt" / "last.pt"
    checkpoint.save(path, {"a": torch.ones(2)})

    def boom(obj, f, *a, **k):
        (f if hasattr(f, "write") else open(f, "wb")).write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        checkpoint.save(path, {"a": torch.zeros(2)})
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))


@pytest.mark.parametrize("d_steps, forwards_per_step", [(1, 1), (3, 3)])
def test_generator_forward_is_reused_for_the_g_step(d_steps, forwards_per_step, tmp_path):
    run = build_run(make_cfg([f"optimizer.d_steps={d_steps}", "train.sample_every=0"], tmp_path))
    calls = []
    run.G.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    train(run)
    assert len(calls) == 4 * forwards_per_step
    # only the forward that the G step reuses keeps its graph
    assert calls[:forwards_per_step] == [False] * (forwards_per_step - 1) + [True]


def test_hparams_live_in_the_run_itself(tmp_path):
    run = build_run(make_cfg(["loss=hinge"], tmp_path))
    train(run)
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    (events,) = run.out_dir.glob("events.out.tfevents.*")  # one event file: add_hparams would make a second run
    values = {v.tag: v for ev in EventFileLoader(str(events)).Load() for v in ev.summary.value}
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(values)
    start = HParamsPluginData.FromString(values["_hparams_/session_start_info"].metadata.plugin_data.content)
    assert start.session_start_info.hparams["batch_size"].number_value == 8
    assert start.session_start_info.hparams["tricks"].string_value == "none"
    assert not [p for p in run.out_dir.iterdir() if p.is_dir() and p.name[0].isdigit()]


def test_plain_progress_lines_when_not_a_terminal(tmp_path, capsys):
    run = build_run(make_cfg([], tmp_path))
    train(run)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step ")]
    assert [ln.split()[1] for ln in lines] == ["2/4", "4/4"]
    assert "it/s" in lines[0] and "d=" in lines[0] and "g=" in lines[0]


def _forward_dtypes(run):
    """dtypes of the first layer outputs of G and D during training (not sampling)."""
    seen = {"G": set(), "D": set()}
    for name, m in (("G", run.G), ("D", run.D)):
        layer = next(x for x in m.modules() if isinstance(x, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)))
        layer.register_forward_hook(lambda mod, i, o, n=name: seen[n].add(o.dtype) if torch.is_grad_enabled() else None)
    return seen


@pytest.mark.parametrize("amp, dtype", [("none", torch.float32), ("bf16", torch.bfloat16)])
def test_amp_runs_the_forwards_in_bf16_and_keeps_fp32_weights(amp, dtype, tmp_path):
    run = build_run(make_cfg([f"train.amp={amp}", "loss=wgan_gp"], tmp_path))
    seen = _forward_dtypes(run)
    final = train(run)
    # D's adversarial forwards run in the amp dtype; the gradient penalty's forward in fp32 (issue 22)
    assert seen == {"G": {dtype}, "D": {dtype, torch.float32}}
    assert all(p.dtype == torch.float32 for p in [*run.G.parameters(), *run.D.parameters()])
    assert all(torch.isfinite(torch.tensor(final[k])) for k in ("loss/d", "loss/g", "loss/gp"))
    grid = read_events(run.out_dir).Images("samples/grid")
    assert grid and grid[-1].step == 4


def test_fp16_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="train.amp must be one of none, bf16, got 'fp16'; .* use bf16"):
        build_run(make_cfg(["train.amp=fp16"], tmp_path))


@pytest.mark.slow
def test_compiled_run_trains_and_saves_plain_state_dicts(tmp_path):
    from torch._dynamo.utils import counters

    counters.clear()
    run = build_run(make_cfg(["train.compile=true", "model=mlp", "loss=wgan_gp", "train.steps=6"], tmp_path))
    g0 = [p.detach().clone() for p in run.G.parameters()]
    final = train(run)
    assert counters["stats"]["unique_graphs"] >= 2  # G and D went through dynamo
    assert any(not torch.equal(a, b) for a, b in zip(g0, run.G.parameters()))
    assert torch.isfinite(torch.tensor(final["loss/gp"]))
    state = checkpoint.load(run.out_dir)
    assert not any("_orig_mod" in k for k in state["G"]) and state["G"].keys() == run.G.state_dict().keys()


@pytest.mark.parametrize("extra", [["dataset.binarize=true", "generator.output=relaxed_bernoulli"],
                                   ["dataset=ring8", "model=mlp", "latent.dim=2"]])
def test_how_often_a_run_samples_does_not_change_its_training(extra, tmp_path):
    """Sampling draws random numbers (relaxed-Bernoulli pixels, 2D real points): from a forked RNG."""
    params = []
    for every in (1, 0):
        run = build_run(make_cfg([*extra, f"train.sample_every={every}"], tmp_path / str(every)))
        train(run)
        params.append(torch.cat([p.detach().flatten() for p in run.G.parameters()]))
    assert len(list((tmp_path / "1" / "samples").glob("step_*.png"))) == 4
    assert torch.equal(*params)


def test_conditional_sample_grid_has_a_row_per_class():
    """The fixed labels cycle 0, 1, ..., 9, 0, ...; the grid sorts the first k of each class into rows."""
    from ganexp.engine.visuals import grid_by_class as _grid_by_class

    y = torch.arange(100) % 10
    x = y.float().view(-1, 1, 1, 1).expand(-1, 1, 2, 2)  # each image is its own label
    shown, nrow = _grid_by_class(x, y)
    assert nrow == 10 and shown[:, 0, 0, 0].view(10, 10).tolist() == [[c] * 10 for c in range(10)]
    shown, nrow = _grid_by_class(x[:64], y[:64])  # 64 fixed samples: 6 of each class, 10 rows of 6
    assert nrow == 6 and shown[:, 0, 0, 0].view(10, 6).tolist() == [[c] * 6 for c in range(10)]
    shown, nrow = _grid_by_class(x, None)  # unconditional: the first 64, a square grid
    assert len(shown) == 64 and nrow is None
    y1000 = torch.arange(100) % 1000  # too many classes for rows: as unconditional
    assert _grid_by_class(x, y1000)[1] is None
