"""ADA (ganexp/tricks/ada.py, ada_ops.py): p adapts from D's real signs, p = 0 is the identity, p = 1
applies every op, gradients reach the images through every op, and the ops are the geometry they claim."""
from __future__ import annotations

import pytest
import torch

from ganexp.errors import ConfigError
from ganexp.hooks import StepContext
from ganexp.tricks.ada import ADA
from ganexp.tricks.ada_ops import COLOR, GEOMETRIC, OPS, augment


def images(n=16, ch=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, ch, size, size, generator=g) * 2 - 1


def test_p_0_is_the_identity_and_p_1_applies_every_op():
    x = images()
    drawn: dict = {}
    assert torch.allclose(augment(x, 0.0, OPS, drawn), x, atol=1e-5)
    assert set(drawn) == set(OPS) | {"rotate_after"} and not any(m.any() for m in drawn.values())
    drawn = {}
    out = augment(x, 1.0, OPS, drawn)
    assert all(m.all() for m in drawn.values()), [k for k, m in drawn.items() if not m.all()]
    assert (out - x).abs().amax(dim=(1, 2, 3)).min() > 1e-2  # every image changed


@pytest.mark.parametrize("op", OPS)
def test_each_op_changes_images_and_passes_gradients(op):
    torch.manual_seed(0)
    x = images(32, 3).requires_grad_(True)
    out = augment(x, 1.0, (op,))
    changed = (out - x).abs().amax(dim=(1, 2, 3)) > 1e-3
    assert changed.any(), op  # random draws may be the identity for a few samples (a flip of 0), not for all
    w = torch.randn_like(out)
    (out * w).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, op


def test_whole_pixel_ops_move_pixels_exactly():
    torch.manual_seed(0)
    x = images(64, 1)
    drawn: dict = {}
    out = augment(x, 1.0, ("xflip",), drawn)
    flipped = torch.where(torch.tensor([bool(torch.equal(o, xi.flip(-1))) for o, xi in zip(out, x)]), 1, 0)
    same = torch.tensor([bool(torch.allclose(o, xi, atol=1e-5)) for o, xi in zip(out, x)])
    exact = torch.tensor([bool(torch.allclose(o, xi.flip(-1), atol=1e-5)) for o, xi in zip(out, x)])
    assert (same | exact).all() and exact.any() and same.any() and flipped.sum() <= exact.sum()
    out = augment(x, 1.0, ("rotate90",))
    rots = [[torch.allclose(o, torch.rot90(xi, k, dims=(1, 2)), atol=1e-5) for k in range(4)] for o, xi in zip(out, x)]
    assert all(any(r) for r in rots)


def test_one_channel_colour_ops_act_on_luma():
    torch.manual_seed(0)
    x = images(32, 1)
    out = augment(x, 1.0, ("hue", "saturation"))  # about the grey axis: grey images stay
    assert torch.allclose(out, x, atol=1e-5)
    out = augment(x, 1.0, ("brightness",))
    shift = (out - x).flatten(1)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-5)  # one offset per image


class Memoriser:
    """A toy D that has memorised 16 images: +5 on any of them, -5 on anything else."""

    def __init__(self, data):
        self.data = data.flatten(1)

    def __call__(self, x):
        d = torch.cdist(x.flatten(1), self.data).amin(1)
        return torch.where(d < 1e-3, 5.0, -5.0)


def _adapt(D, data, p_init, steps=200, kimg=0.5):
    ada = ADA(target=0.6, interval=4, kimg=kimg, p_init=p_init)
    ada.batch_size = len(data)
    ps = []
    for step in range(steps):
        d_real = D(ada.on_d_input(data, step))
        ada.on_d_loss(torch.zeros(()), StepContext(step, None, None, data, None, data, None, d_real, None))
        ada.after_d_step(step)
        ps.append(float(ada.p))
    return ps, ada


def test_p_rises_on_a_d_that_memorises_and_falls_on_one_that_does_not():
    torch.manual_seed(0)
    data = images(16, 3)
    ps, ada = _adapt(Memoriser(data), data, 0.0, steps=400, kimg=20)
    up = 16 * 4 / 20_000
    assert ps[2] == 0 and ps[3] == pytest.approx(up)  # D recognises its 16 images: r_t = 1 > 0.6, p climbs
    # until augmented copies it no longer recognises hold r_t near the target: p stays up, below 1
    assert 0 < min(ps[100:]) and max(ps) < 0.5 and float(ada.scalars(0)["p"]) > 0
    torch.manual_seed(0)
    ps, ada = _adapt(lambda x: torch.randn(len(x)), data, 0.8)  # signs at random: r_t ~ 0 < 0.6, p falls
    assert ps[-1] < 0.2 and abs(float(ada.rt)) < 0.6
    step = 16 * 4 / 500  # batch * interval / (kimg * 1000): the size of one adjustment
    assert ps[3] == pytest.approx(0.8 - step) and ps[0] == ps[2] == pytest.approx(0.8)


def test_fixed_p_does_not_adapt_and_bad_settings_are_one_line():
    data = images(16, 3)
    ps, _ = _adapt(Memoriser(data), data, 0.0, steps=12)
    fixed = ADA(p=0.3)
    fixed.batch_size = 16
    for step in range(12):
        fixed.on_d_loss(torch.zeros(()), StepContext(step, None, None, data, None, data, None, torch.ones(16), None))
        fixed.after_d_step(step)
    assert float(fixed.p) == pytest.approx(0.3) and ps[-1] > 0
    with pytest.raises(ConfigError, match="ada.ops: unknown op cutout"):
        ADA(ops="xflip,cutout")
    with pytest.raises(ConfigError, match=r"ada.target must be in \[0, 1\]"):
        ADA(target=2)
    assert set(GEOMETRIC) | set(COLOR) == set(OPS)
