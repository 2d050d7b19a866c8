"""`ganexp sample mode=steer`: the image edits, learning a walk on a generator known to be
steerable, and the mode end to end on tiny trained checkpoints."""
import math
import subprocess

import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image
from torch import nn

from ganexp.build import build_run
from ganexp.engine import train
from ganexp.errors import ConfigError
from ganexp.sample.generate import sample
from ganexp.models.latent import Latent
from ganexp.sample.steer import EDITS, brightness, learn, objective, rotate, shift_x, shift_y, zoom
from tests.conftest import ENV, GANEXP, make_cfg

ALLOWED = "zoom, shift_x, shift_y, brightness, rotate"


def cols(w: int = 4) -> torch.Tensor:
    """A 1x1xWxW image whose value is its column index."""
    return torch.arange(w, dtype=torch.float).expand(1, 1, w, w).clone()


# --- the edits --------------------------------------------------------------------------------

def test_shift_x_by_one_pixel_moves_the_columns_and_masks_the_new_one():
    x = torch.arange(16, dtype=torch.float).view(1, 1, 4, 4)
    out, mask = shift_x(x, torch.tensor([0.25]))  # a quarter of 4 px: one pixel right
    assert torch.allclose(out[..., 1:], x[..., :-1], atol=1e-5)
    assert mask[..., 0].eq(0).all() and mask[..., 1:].eq(1).all()
    left, mask = shift_x(x, torch.tensor([-0.25]))
    assert torch.allclose(left[..., :-1], x[..., 1:], atol=1e-5) and mask[..., -1].eq(0).all()


def test_shift_y_moves_rows_down():
    x = torch.arange(16, dtype=torch.float).view(1, 1, 4, 4)
    out, mask = shift_y(x, torch.tensor([0.5]))  # two pixels down
    assert torch.allclose(out[..., 2:, :], x[..., :2, :], atol=1e-5)
    assert mask[..., :2, :].eq(0).all() and mask[..., 2:, :].eq(1).all()


def test_zoom_in_and_out_against_hand_computed_sample_points():
    # x2 about the centre: output pixel centres map to input columns 0.75, 1.25, 1.75, 2.25
    out, mask = zoom(cols(), torch.tensor([1.0]))
    assert torch.allclose(out[0, 0, 1], torch.tensor([0.75, 1.25, 1.75, 2.25]), atol=1e-5)
    assert mask.eq(1).all()
    # x0.5: columns -1.5, 0.5, 2.5, 4.5; the outer ring falls outside the image and is masked
    out, mask = zoom(cols(), torch.tensor([-1.0]))
    assert torch.allclose(out[0, 0, 1, 1:3], torch.tensor([0.5, 2.5]), atol=1e-5)
    expected = torch.zeros(4, 4)
    expected[1:3, 1:3] = 1
    assert torch.equal(mask[0, 0], expected)


def test_rotate_quarter_turn_is_rot90_counter_clockwise():
    x = torch.randn(2, 3, 5, 5)
    out, mask = rotate(x, torch.tensor([math.pi / 2, 0.0]))
    assert torch.allclose(out[0], torch.rot90(x[0], 1, (-2, -1)), atol=1e-5)
    assert torch.allclose(out[1], x[1], atol=1e-5)
    assert mask.eq(1).all()


def test_brightness_adds_a_constant_clipped_to_the_image_range():
    x = torch.tensor([[-0.5, 0.0], [0.25, 0.9]]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    out, mask = brightness(x, torch.tensor([0.25, -0.75]))
    assert torch.allclose(out[0, 0], torch.tensor([[-0.25, 0.25], [0.5, 1.0]]))
    assert torch.allclose(out[1, 0], torch.tensor([[-1.0, -0.75], [-0.5, 0.15]]))
    assert mask.eq(1).all()


def test_masked_pixels_do_not_count_in_the_loss():
    """Each image row holds one value, so a shift right changes nothing but the new left column,
    which is undefined: w = 0 scores zero, though the unmasked error would not."""
    class RowG(nn.Module):
        def forward(self, z, y=None):
            return z[:, None, :, None].expand(-1, 1, 4, 4)

    G, z, alpha = RowG(), torch.randn(3, 4), torch.full((3,), 0.25)
    assert objective(G, z, None, alpha, torch.zeros(4), "shift_x").item() < 1e-10
    target, mask = shift_x(G(z), alpha)
    assert ((G(z) - target) ** 2).mean() > 0.1 and mask[..., 0].eq(0).all()


# --- learning on generators known to be steerable -------------------------------------------------

class BrightG(nn.Module):
    """Brightness is linear in z[0]; z[1] draws a checkerboard that brightness must not use."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.1))
        self.register_buffer("board", (torch.arange(8)[:, None] + torch.arange(8)).remainder(2).float() * 2 - 1)

    def forward(self, z, y=None):
        return self.scale * (z[:, 0, None, None, None] + z[:, 1, None, None, None] * self.board)


class BlobG(nn.Module):
    """A Gaussian blob whose horizontal position is 0.2 z[0] (in [-1, 1] image coordinates)."""

    def forward(self, z, y=None):
        u = torch.linspace(-1, 1, 16)
        d2 = (u[None, None, :] - 0.2 * z[:, 0, None, None]) ** 2 + (u[None, :, None] - 0.1 * z[:, 1, None, None]) ** 2
        return torch.exp(-d2 / 0.08)[:, None] * 2 - 1


def test_learning_recovers_the_brightness_direction_with_g_frozen():
    G = BrightG()
    d = learn(G, Latent(4), "brightness", alpha_max=0.5, steps=150, batch=32, lr=0.2)
    w = d["w"]
    assert w.shape == (4,)
    assert w[0] > 0 and torch.nn.functional.cosine_similarity(w, torch.tensor([1.0, 0, 0, 0]), 0) > 0.99
    assert 8 < w[0] < 12  # 0.1 * alpha * w0 = alpha  =>  w0 = 10
    assert d["loss"] < 0.02 * d["loss_w0"]
    assert G.scale.grad is None and not G.scale.requires_grad
    assert len(d["losses"]) == 150 and d["losses"][-1] < d["losses"][0]


def test_learning_a_shift_moves_along_the_position_latent():
    d = learn(BlobG(), Latent(3), "shift_x", alpha_max=0.1, steps=150, batch=32, lr=0.2)
    w = d["w"]
    assert w[0] > 0 and w[0] / w.norm() > 0.9  # 0.2 * alpha * w0 = 2 * alpha  =>  w0 = 10
    assert d["loss"] < 0.3 * d["loss_w0"]
    d = learn(BlobG(), Latent(3), "shift_x", alpha_max=0.1, steps=150, batch=32, lr=0.2, seed=1)
    assert d["w"][0] > 0


# --- end to end on tiny trained checkpoints -------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("steer")
    made = {}
    # the image runs train 60 steps: after the tiny default of 4, G draws near-blank images (pixel std
    # about 0.01), which a shift hardly changes, so a steering fit has nothing to learn
    old_default = ["loss=nsgan", "optimizer.g.lr=8e-4", "optimizer.d.lr=8e-4"]  # the Gs steer's tests were written on
    for name, overrides in [("cond", [*old_default, "conditional=true", "train.steps=60"]),
                            ("uncond", [*old_default, "train.steps=60"]),
                            ("points", ["experiment=ring8_mlp", "train.num_fixed=16"])]:
        train(build_run(make_cfg([*overrides, "train.batch_size=8"], out / name)))
        made[name] = out / name
    return made


def sample_cfg(*overrides):
    with initialize_config_module("ganexp.conf", version_base="1.3"):
        return compose("sample", overrides=["device=cpu", *overrides])


STEER = ["mode=steer", "steer.steps=8", "steer.batch=8", "steer.rows=3", "steer.cols=5"]


@pytest.mark.parametrize("which", ["cond", "uncond"])
def test_steer_writes_the_grid_and_a_reusable_direction(runs, which, tmp_path, capsys):
    run = runs[which]
    png = sample(sample_cfg(f"ckpt={run}", *STEER, "steer.edit=shift_x"))
    assert png == run / "samples" / "steer_shift_x.png"
    assert Image.open(png).size == (5 * 30 + 2, 3 * 30 + 2)  # 5 alphas x 3 latents of 28 px, 2 px padding
    d = torch.load(run / "samples" / "steer_shift_x.pt")
    assert d["w"].shape == (100,) and d["w"].norm() > 0
    assert d["edit"] == "shift_x" and d["alpha_max"] == 0.25 and len(d["losses"]) == 8
    assert d["loss"] < d["loss_w0"]
    printed = capsys.readouterr().out
    assert f"held-out loss {d['loss_w0']:.4f} at w=0 -> {d['loss']:.4f} learned" in printed

    again = sample(sample_cfg(f"ckpt={run}", *STEER, f"steer.direction={run / 'samples' / 'steer_shift_x.pt'}",
                              f"out={tmp_path / 'again.png'}"))
    assert torch.equal(torch.tensor(list(Image.open(again).getdata())), torch.tensor(list(Image.open(png).getdata())))
    assert torch.equal(torch.load(run / "samples" / "steer_shift_x.pt")["w"], d["w"])  # reuse does not relearn

    x = torch.load(sample(sample_cfg(f"ckpt={run}", *STEER, f"steer.direction={run / 'samples' / 'steer_shift_x.pt'}",
                                     f"out={tmp_path / 'walk.pt'}")))
    assert x["x"].shape == (15, 1, 28, 28)
    assert not torch.allclose(x["x"][0], x["x"][4])  # the walk changes the image along a row
    if which == "cond":  # one class per row, fixed along the walk
        assert x["y"].tolist() == [0] * 5 + [1] * 5 + [2] * 5


def test_steer_label_and_alpha_override(runs, tmp_path):
    path = runs["cond"] / "samples" / "steer_brightness.pt"
    sample(sample_cfg(f"ckpt={runs['cond']}", *STEER, "steer.edit=brightness", f"out={tmp_path / 'b.png'}"))
    assert torch.load(path)["alpha_max"] == 0.5
    y = torch.load(sample(sample_cfg(f"ckpt={runs['cond']}", *STEER, f"steer.direction={path}", "label=7",
                                     "steer.alpha_max=1e-6", f"out={tmp_path / 'b.pt'}")))
    assert y["y"].tolist() == [7] * 15
    assert torch.allclose(y["x"][0], y["x"][4], atol=1e-3)  # a tiny alpha range barely moves


def test_conditional_paths_keep_one_class_per_row(runs, tmp_path):
    """interp, arith and steer rows are one path through z; the class must not change along them."""
    interp = torch.load(sample(sample_cfg(f"ckpt={runs['cond']}", "mode=interp", "n=3", "steps=4", f"out={tmp_path / 'i.pt'}")))
    assert interp["y"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    arith = torch.load(sample(sample_cfg(f"ckpt={runs['cond']}", "mode=arith", f"out={tmp_path / 'a.pt'}")))
    assert arith["y"].tolist() == [0] * 4
    grid = torch.load(sample(sample_cfg(f"ckpt={runs['cond']}", "n=12", f"out={tmp_path / 'g.pt'}")))
    assert grid["y"].tolist() == [*range(10), 0, 1]  # the grid still shows every class


@pytest.mark.parametrize("overrides, fragment", [
    (["steer.edit=blur"], f"unknown steer.edit 'blur'; choose one of {ALLOWED}"),
    (["steer.cols=1"], "steer.cols must be >= 2, got 1"),
    (["steer.alpha_max=-1"], "steer.alpha_max must be > 0, got -1"),
    (["steer.lr=0"], "steer.lr must be > 0, got 0"),
    (["steer.direction=/no/such.pt"], "steer.direction not found: /no/such.pt"),
    (["out=walk.gif"], "out must end in .png, .npy or .pt, got 'walk.gif'"),
])
def test_steer_mistakes_are_one_line(runs, overrides, fragment):
    with pytest.raises(ConfigError) as e:
        sample(sample_cfg(f"ckpt={runs['uncond']}", *STEER, *overrides))
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_steer_refuses_points_and_foreign_directions(runs, tmp_path):
    with pytest.raises(ConfigError, match=r"^mode=steer edits images; this checkpoint generates points \(ring8\)"):
        sample(sample_cfg(f"ckpt={runs['points']}", *STEER))
    torch.save({"w": torch.zeros(7), "edit": "zoom", "alpha_max": 1.0}, tmp_path / "w7.pt")
    with pytest.raises(ConfigError, match=r"has shape \(7,\); this generator's latent is \(100,\)"):
        sample(sample_cfg(f"ckpt={runs['uncond']}", *STEER, f"steer.direction={tmp_path / 'w7.pt'}"))
    with pytest.raises(ConfigError, match="would overwrite the steer direction"):
        sample(sample_cfg(f"ckpt={runs['uncond']}", *STEER, f"steer.direction={tmp_path / 'w7.pt'}", f"out={tmp_path / 'w7.pt'}"))
    assert torch.load(tmp_path / "w7.pt")["w"].shape == (7,)
    torch.save({"w": torch.zeros(100), "edit": "../blur", "alpha_max": 1.0}, tmp_path / "blur.pt")
    with pytest.raises(ConfigError, match="holds an unknown edit '../blur'"):
        sample(sample_cfg(f"ckpt={runs['uncond']}", *STEER, f"steer.direction={tmp_path / 'blur.pt'}"))
    torch.save({"x": torch.zeros(3)}, tmp_path / "samples.pt")
    with pytest.raises(ConfigError, match="is not a steer direction"):
        sample(sample_cfg(f"ckpt={runs['uncond']}", *STEER, f"steer.direction={tmp_path / 'samples.pt'}"))


def test_steer_cli_error_is_one_line(runs, tmp_path):
    r = subprocess.run([GANEXP, "sample", f"ckpt={runs['uncond']}", "mode=steer", "steer.edit=blur", "device=cpu"],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 2 and f"error: unknown steer.edit 'blur'; choose one of {ALLOWED}" in out, out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1


@pytest.mark.slow
def test_steer_cli_with_default_settings(runs, tmp_path):
    """The defaults (200 Adam steps, batch 32) through the command a user types."""
    r = subprocess.run([GANEXP, "sample", f"ckpt={runs['cond']}", "mode=steer", "steer.edit=zoom", "device=cpu"],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "steer zoom: held-out loss" in r.stdout and "over 200 steps" in r.stdout
    assert Image.open(runs["cond"] / "samples" / "steer_zoom.png").size == (9 * 30 + 2, 8 * 30 + 2)


def test_every_edit_has_a_positive_default_range():
    assert list(EDITS) == ALLOWED.split(", ")
    assert all(amax > 0 for _, amax in EDITS.values())
