"""Packaged digits, Stacked MNIST, resolution as a dataset setting, and the CLI end to end."""
from __future__ import annotations

import json
import subprocess

import pytest
import torch

from ganexp.build import build_run
from ganexp.build.factory import build_dataset
from ganexp.data.stacked import stack
from ganexp.engine import train
from ganexp.sample.rebuild import load_generator
from ganexp.errors import ConfigError
from tests.conftest import ENV, GANEXP, load_dataset, make_cfg, read_events, training_inputs, write_mnist


@pytest.mark.parametrize("option, n, res", [("digits", 5000, 28), ("sklearn_digits", 1797, 32)])
def test_packaged_digits_uint8_on_device_in_unit_range(option, n, res):
    data = load_dataset(option)
    assert data.x.shape == (n, 1, res, res) and data.x.dtype == torch.uint8
    assert (data.info.kind, data.info.shape, data.info.num_classes) == ("image", (1, res, res), 10)
    assert torch.bincount(data.y).min() > n / 10 * 0.8  # all ten digits, roughly balanced
    x, y = data.sample(256)
    assert x.shape == (256, 1, res, res) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() == -1.0 and x.max() == 1.0  # black background, saturated strokes


def test_sklearn_digits_keep_their_grey_levels():
    from sklearn.datasets import load_digits

    native = load_dataset("sklearn_digits", "dataset.resolution=8")
    ref = torch.tensor(load_digits().images * 255 / 16).round()
    assert torch.equal(native.x[:, 0].double(), ref)


@pytest.mark.parametrize("option, res", [("digits", 32), ("sklearn_digits", 16)])
def test_resolution_setting_and_models_adapt(option, res, tmp_path):
    run = build_run(make_cfg([f"dataset={option}", f"dataset.resolution={res}"], tmp_path))
    assert run.info.shape == (1, res, res)
    z, y = run.latent.sample(2)
    fake = run.G(z, y)
    assert fake.shape == (2, 1, res, res) and run.D(fake, y).shape == (2,)


def test_stack_puts_one_digit_per_channel_and_labels_the_mode():
    x = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 1, 4, 4).contiguous()  # image i is all i
    y = torch.arange(20) % 10
    sx, sy = stack(x, y, 500, seed=3)
    assert sx.shape == (500, 3, 4, 4)
    src = sx[:, :, 0, 0].long()  # which source image sits in each channel
    assert torch.equal(sy, y[src[:, 0]] * 100 + y[src[:, 1]] * 10 + y[src[:, 2]])
    assert torch.equal(sx, x[src].squeeze(2))
    assert torch.equal(stack(x, y, 500, seed=3)[0], sx) and not torch.equal(stack(x, y, 500, seed=4)[0], sx)


def test_stacked_mnist_from_packaged_digits_covers_the_1000_modes():
    data = load_dataset("stacked_mnist", "dataset.num_samples=20000")
    assert data.x.shape == (20000, 3, 28, 28) and data.x.dtype == torch.uint8
    assert (data.info.shape, data.info.num_classes) == ((3, 28, 28), 1000)
    counts = torch.bincount(data.y, minlength=1000)
    assert len(counts) == 1000 and (counts > 0).sum() > 990  # 20 expected per mode
    x, y = data.sample(8)
    assert x.shape == (8, 3, 28, 28) and -1 <= x.min() and x.max() <= 1 and y.max() < 1000


def test_stacked_mnist_on_torchvision_mnist(tmp_path):
    files = write_mnist(tmp_path)
    data = load_dataset("stacked_mnist", "dataset.source=mnist", f"dataset.root={tmp_path}", "dataset.num_samples=50")
    digit = data.x[:, :, 5, 5].long() // 25  # write_mnist fills image i with 25 * label
    assert torch.equal(data.y, digit[:, 0] * 100 + digit[:, 1] * 10 + digit[:, 2])
    assert set(digit.flatten().tolist()) <= set(files["train"][1].tolist())
    with pytest.raises(ConfigError, match="dataset.source must be one of"):
        load_dataset("stacked_mnist", "dataset.source=svhn")


def ganexp(*args, cwd):
    return subprocess.run([GANEXP, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # end-to-end CLI runs: the fast set stays under 10 minutes on 2 cores
def test_cli_trains_on_each_toy_set_and_the_packaged_digits(tmp_path):
    """One `ganexp train -m` process: a short run per dataset, each in its own sweep folder."""
    sets = ["ring8", "grid25", "swiss_roll", "iris", "digits"]
    r = ganexp("train", "-m", f"dataset={','.join(sets)}", "model=mlp", "device=cpu", "train.steps=20",
               "train.batch_size=32", "train.log_every=10", "train.sample_every=20", "train.ckpt_every=20",
               "train.num_fixed=16", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    runs = {p.name.split("dataset-")[1]: p for p in (tmp_path / "sweep").iterdir() if p.is_dir()}
    assert sorted(runs) == sorted(sets)
    for name, run in runs.items():
        final = json.loads((run / "metrics.json").read_text())
        acc = read_events(run)
        for k in ("loss/d", "loss/g"):  # logged every 10 steps; metrics.json holds the last values
            steps, values = zip(*[(e.step, e.value) for e in acc.Scalars(k)])
            assert steps == (10, 20) and values[-1] == pytest.approx(final[k], rel=1e-6), name
        shape = (1, 28, 28) if name == "digits" else (2,)  # the toy sets are 2D points (iris: two features)
        plot = "samples/grid" if name == "digits" else "samples/scatter"
        assert [i.step for i in acc.Images(plot)] == [20] and (run / "samples/step_0000020.png").is_file(), name
        state = torch.load(run / "ckpt/last.pt", map_location="cpu", weights_only=False)
        assert (state["step"], state["data_info"]["name"], tuple(state["data_info"]["shape"])) == (20, name, shape)
        G, latent, _ = load_generator(str(run), device="cpu")
        with torch.no_grad():  # the checkpoint's G makes samples of the dataset's shape
            assert G(*latent.sample(4)).shape == (4, *shape), name


def test_cli_missing_dataset_is_one_line(tmp_path):
    r = ganexp("train", "dataset=cifar10", f"dataset.root={tmp_path / 'data'}", "device=cpu", cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in out, out
    assert (f"error: cifar10 not found or corrupted in {tmp_path / 'data'}/cifar-10-batches-py: set "
            "dataset.download=true on a machine with internet, or point dataset.root=PATH at an existing copy") in out


def test_tiny_run_in_process_on_conditional_iris(tmp_path):
    """Labels reach a conditional model from a points dataset."""
    run = build_run(make_cfg(["loss=nsgan", "dataset=iris", "model=mlp", "conditional=true", "latent.dim=2"], tmp_path))
    assert run.info.num_classes == 3 and run.G.num_classes == 3
    d_in = training_inputs(run.D)
    train(run)
    real = d_in[0::3]  # per step: D(real, y), D(fake, y_fake) in D's step, D(fake, y_fake) in G's
    assert len(real) == 4
    for x, y in real:  # each real point arrives with its own label from the data set
        rows = (x[:, None] == run.data.x[None]).all(2)
        assert all(y[i] in run.data.y[rows[i]] for i in range(len(x)))
    assert len(torch.cat([y for _, y in real]).unique()) > 1


def test_subset_is_stratified_fixed_and_keeps_the_whole_set_for_metrics(tmp_path):
    """dataset.subset=0.1 trains on 500 of the 5,000 digits, 50 per class, the same 500 in every run
    (whatever the seed); the metrics still take the whole set as their reference."""
    part = load_dataset("digits", "dataset.subset=0.1")
    assert len(part) == 500 and len(part.full) == 5000
    assert torch.bincount(part.y).tolist() == [50] * 10
    rows = {tuple(r) for r in part.full.x.flatten(1).tolist()}
    assert all(tuple(r) in rows for r in part.x.flatten(1).tolist())  # real digits of the full set
    assert torch.equal(load_dataset("digits", "dataset.subset=500").x, part.x)  # a count, the same subset
    assert len(load_dataset("digits", "dataset.subset=37")) == 37
    run = build_run(make_cfg(["dataset.subset=0.1", "metrics=[default]", "seed=3"], tmp_path))
    assert torch.equal(run.data.x, part.x)
    assert run.evaluators[0].metrics[0].data is run.data.full and len(run.data.full) == 5000


@pytest.mark.parametrize("value", ["0", "1.5", "5001", "abc", "0.00001"])
def test_subset_out_of_range_is_one_line(value):
    with pytest.raises(ConfigError, match=r"^dataset.subset=.*(give a fraction in \(0, 1\)|a whole count from 1 to 5000)"):
        load_dataset("digits", f"dataset.subset={value}")


def test_streamed_subset_draws_a_fixed_part(tmp_path):
    from PIL import Image

    for i in range(10):
        (tmp_path / "img").mkdir(exist_ok=True)
        Image.new("RGB", (16, 16), (20 * i, 0, 0)).save(tmp_path / "img" / f"{i}.png")
    cfg = ["dataset=image_folder", f"dataset.root={tmp_path / 'img'}", "dataset.resolution=16", "dataset.num_workers=0"]
    part = build_dataset(make_cfg([*cfg, "dataset.subset=0.3"]).dataset)
    assert len(part) == 3 and len(part.full) == 10
    assert part.dataset.indices == build_dataset(make_cfg([*cfg, "dataset.subset=3"]).dataset).dataset.indices
    assert part.sample(3)[0].shape == (3, 3, 16, 16)  # streams from the part
    seen = {round(float(v), 3) for _ in range(4) for v in part.sample(3)[0][:, 0, 0, 0]}
    assert len(seen) <= 3  # 12 draws, only the part's 3 images (the whole folder has 10 shades)
