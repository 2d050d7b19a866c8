"""AC-GAN (discriminator.cond=acgan) and DiffAugment (tricks=[diffaugment])."""
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
from ganexp.tricks.diffaugment import DiffAugment, augment, brightness, cutout, translate
from tests.conftest import scalars, spy, training_outputs


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
    D = MLPDiscriminator(shape=[2], is_image=False, hidden=[16], num_classes=2, cond="acgan")
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
    head = run.D.classifier.weight.detach().clone()
    real, fake = spy(run.data, "sample"), spy(run.latent, "sample")  # each step's batches and their labels
    logits = training_outputs(run.D.classifier)  # per step: the real batch, the D step's fakes, the G step's fakes
    train(run)
    assert len(logits) == 3 * 4 and not torch.equal(head, run.D.classifier.weight)  # the class head trains
    # the logged accuracies are the head's on the real and the fake batch of the last D step before the log
    for tag, i, batches in (("acc_real", 0, real), ("acc_fake", 1, fake)):
        hand = [(logits[3 * s + i].argmax(1) == batches[s][1][1]).float().mean().item() for s in (1, 3)]
        assert scalars(run.out_dir, f"trick/acgan/{tag}") == [(2, pytest.approx(hand[0])), (4, pytest.approx(hand[1]))]


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


# --- DiffAugment ------------------------------------------------------------------------------

def test_diffaugment_is_differentiable_and_gradients_reach_g():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(4, 3 * 8 * 8), nn.Tanh(), nn.Unflatten(1, (3, 8, 8)))
    z = torch.randn(5, 4)
    torch.manual_seed(1)
    drawn = {}
    augment(G(z), ("color", "translation", "cutout"), drawn=drawn).square().sum().backward()
    grads = [p.grad.clone() for p in G.parameters()]
    assert all(g.abs().sum() > 0 for g in grads)
    # the same ops written out as plain tensor code, same draws: autograd gives the same gradients
    G.zero_grad()
    x = G(z)
    x = x + drawn["brightness"].view(-1, 1, 1, 1)
    m = x.mean(1, keepdim=True)
    x = (x - m) * drawn["saturation"].view(-1, 1, 1, 1) + m
    m = x.mean((1, 2, 3), keepdim=True)
    x = (x - m) * drawn["contrast"].view(-1, 1, 1, 1) + m
    out = torch.zeros_like(x)
    for b in range(5):
        dy, dx = int(drawn["dy"][b]), int(drawn["dx"][b])
        for i in range(8):
            for j in range(8):
                if 0 <= i - dy < 8 and 0 <= j - dx < 8:
                    out[b, :, i, j] = x[b, :, i - dy, j - dx]
    mask = torch.ones(5, 1, 8, 8)
    for b in range(5):
        top, left = int(drawn["cy"][b]) - 2, int(drawn["cx"][b]) - 2
        mask[b, :, max(top, 0):max(top + 4, 0), max(left, 0):max(left + 4, 0)] = 0
    (out * mask).square().sum().backward()
    for g, p in zip(grads, G.parameters()):
        torch.testing.assert_close(g, p.grad)


def test_brightness_shifts_each_sample_mean_by_its_draw():
    x = torch.rand(6, 3, 8, 8) * 2 - 1
    drawn = {}
    out = augment(x, ("color",), drawn=drawn)
    only = brightness(x, drawn["brightness"])
    torch.testing.assert_close(only.mean((1, 2, 3)) - x.mean((1, 2, 3)), drawn["brightness"])
    # contrast keeps the mean and saturation keeps each pixel's channel mean: the colour op's mean shift is brightness
    torch.testing.assert_close(out.mean((1, 2, 3)) - x.mean((1, 2, 3)), drawn["brightness"])
    assert drawn["brightness"].abs().max() <= 0.5 and len(set(drawn["brightness"].tolist())) == 6


def test_translation_moves_content_by_whole_pixels_with_zero_padding():
    x = torch.zeros(2, 1, 8, 8)
    x[:, 0, 3, 4] = 1.0
    out = translate(x, torch.tensor([1, -1]), torch.tensor([0, 1]), 1)
    assert out[0, 0, 4, 4] == 1 and out[1, 0, 2, 5] == 1 and out.sum() == 2
    x = torch.ones(1, 1, 8, 8)
    out = translate(x, torch.tensor([1]), torch.tensor([-1]), 1)
    assert out[0, 0, 0].sum() == 0 and out[0, 0, :, 7].sum() == 0 and out.sum() == 49  # padded row and column
    drawn = {}
    augment(torch.ones(64, 1, 16, 16), ("translation",), drawn=drawn)
    assert drawn["dy"].abs().max() == 2 and drawn["dx"].abs().max() == 2  # 1/8 of 16 px


def test_cutout_zeroes_a_square_of_half_the_image():
    x = torch.ones(1, 3, 8, 8)
    out = cutout(x, torch.tensor([4]), torch.tensor([3]), (4, 4))
    assert (out == 0).all(0).all(0).nonzero().tolist() == [[r, c] for r in range(2, 6) for c in range(1, 5)]
    drawn = {}
    out = augment(torch.ones(32, 1, 16, 16), ("cutout",), drawn=drawn)
    inner = ((drawn["cy"] >= 4) & (drawn["cy"] <= 12) & (drawn["cx"] >= 4) & (drawn["cx"] <= 12))
    zeros = (out == 0).flatten(1).sum(1)
    assert (zeros[inner] == 64).all() and (zeros <= 64).all() and (zeros >= 16).all()


def test_diffaugment_policy_and_bad_policy():
    assert DiffAugment(policy=["color", "cutout"]).policy == ("color", "cutout")
    with pytest.raises(ConfigError, match="diffaugment.policy: unknown op blur"):
        DiffAugment(policy="color,blur")


def test_diffaugment_augments_every_batch_d_sees(cfg_factory):
    """Cutout only: every input of D in a run, real and fake, D step and G step, has its zeroed square."""
    run = build_run(cfg_factory("loss=nsgan", "tricks=[diffaugment]", "tricks.diffaugment.policy=[cutout]"))  # no R1 forward
    seen = []
    run.D.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    train(run)
    H = seen[0].shape[-1]
    least = (H // 2 // 2) ** 2  # a square clipped at a corner keeps a quarter
    assert len(seen) == 3 * 4  # real + fake in the D step, fake in the G step, 4 steps
    assert all(((x == 0).all(1).flatten(1).sum(1) >= least).all() for x in seen)
    plain = build_run(cfg_factory("loss=nsgan", "seed=1", "overwrite=true"))
    seen.clear()
    plain.D.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    train(plain)
    assert not all(((x == 0).all(1).flatten(1).sum(1) >= least).all() for x in seen)


def test_diffaugment_refuses_2d_points(cfg_factory):
    with pytest.raises(ConfigError, match="diffaugment augments images; 'ring8' is 2D points"):
        build_run(cfg_factory("tricks=[diffaugment]", "dataset=ring8", "model=mlp"))
