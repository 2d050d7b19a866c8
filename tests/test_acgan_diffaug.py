"""AC-GAN (discriminator.cond=acgan)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganexp.build import build_run
from ganexp.engine import train
from ganexp.errors import ConfigError
from ganexp.hooks import StepContext
from ganexp.models.mlp import MLPDiscriminator
from ganexp.tricks.acgan import ACGAN
from tests.conftest import read_events


# --- AC-GAN -----------------------------------------------------------------------------------

def ce_by_hand(logits: list[list[float]], y: list[int]) -> float:
    return sum(math.log(sum(math.exp(v) for v in row)) - row[c] for row, c in zip(logits, y)) / len(y)


class FixedD(nn.Module):
    """A stand-in D whose class head returns fixed logits per batch."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def classify(self, x):
        return self.table[id(x)]


def test_acgan_terms_equal_the_hand_computed_cross_entropy():
    lr, lf = [[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]], [[1.0, 1.0, 0.0], [-2.0, 0.0, 2.5]]
    yr, yf = [0, 1], [2, 2]
    real, fake = torch.zeros(2, 4), torch.ones(2, 4)
    D = FixedD({id(real): torch.tensor(lr), id(fake): torch.tensor(lf)})
    h = ACGAN(weight_d=0.5, weight_g=2.0)
    ctx = StepContext(0, None, D, real, torch.tensor(yr), fake, torch.tensor(yf))
    d = h.on_d_loss(torch.tensor(1.0), ctx)
    g = h.on_g_loss(torch.tensor(-1.0), ctx)
    assert d.item() == pytest.approx(1.0 + 0.5 * (ce_by_hand(lr, yr) + ce_by_hand(lf, yf)), abs=1e-6)
    assert g.item() == pytest.approx(-1.0 + 2.0 * ce_by_hand(lf, yf), abs=1e-6)
    # accuracies: argmax of real rows (0, 2) vs labels (0, 1); of fake rows (0, 2) vs (2, 2)
    assert h.scalars(0)["acc_real"].item() == 0.5 and h.scalars(0)["acc_fake"].item() == 0.5


def test_acgan_classifier_learns_two_separable_classes():
    torch.manual_seed(0)
    D = MLPDiscriminator(shape=[2], kind="points", hidden=[16], num_classes=2, cond="acgan")
    h = ACGAN(weight_d=1.0)
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)

    def batch(n):
        y = torch.randint(0, 2, (n,))
        return torch.randn(n, 2) * 0.3 + torch.stack([y * 4.0 - 2.0, torch.zeros(n)], 1), y

    for step in range(200):  # the D side only: class terms on real and on "fake" (another labelled batch)
        (xr, yr), (xf, yf) = batch(32), batch(32)
        loss = h.on_d_loss(torch.zeros(()), StepContext(step, None, D, xr, yr, xf, yf))
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = batch(500)
    with torch.no_grad():
        acc = (D.classify(x).argmax(1) == y).float().mean().item()
    assert acc > 0.95
    assert D(x, y).shape == (500,)  # D(x, y) is still the adversarial logit


@pytest.mark.parametrize("loss", ["nsgan", "hinge"])
def test_a_conditional_acgan_run_trains_and_logs_the_accuracies(loss, cfg_factory):
    run = build_run(cfg_factory("conditional=true", "discriminator.cond=acgan", f"loss={loss}"))
    assert [t.name for t in run.tricks] == ["acgan"] and run.D.embed is None and run.D.classifier is not None
    final = train(run)
    assert final["step"] == 4 and math.isfinite(final["loss/d"])
    acc = read_events(run.out_dir)
    for tag in ("trick/acgan/acc_real", "trick/acgan/acc_fake"):
        assert [e.step for e in acc.Scalars(tag)] == [2, 4]


def test_acgan_weights_come_from_the_yaml_and_the_head_is_trained(cfg_factory):
    run = build_run(cfg_factory("conditional=true", "discriminator.cond=acgan", "tricks=[acgan]",
                                "tricks.acgan.weight_d=0.25", "tricks.acgan.weight_g=3"))
    (h,) = run.tricks
    assert (h.weight_d, h.weight_g) == (0.25, 3.0)
    before = run.D.classifier.weight.detach().clone()
    train(run)
    assert not torch.equal(before, run.D.classifier.weight.detach())


def test_acgan_without_its_discriminator_fails_in_one_line(cfg_factory):
    with pytest.raises(ConfigError, match="acgan needs conditional=true and discriminator.cond=acgan"):
        build_run(cfg_factory("tricks=[acgan]"))
