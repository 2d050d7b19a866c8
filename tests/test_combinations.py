"""Combinations whose parts each worked alone: R1 with augmentation, the unrolled look-ahead with
clipping, ranking by a classifier accuracy."""
from __future__ import annotations

import pytest
import torch

from ganexp.build import build_run
from ganexp.engine import train
from ganexp.errors import ConfigError
from ganexp.hooks import Hook, StepContext
from ganexp.study import table
from ganexp.tricks.penalties import R1

RING = ["experiment=ring8_mlp", "generator.hidden=[16]", "discriminator.hidden=[16]"]


class Square(torch.nn.Module):
    """D(x) = sum of x^2: grad_x D = 2x, so ||grad||^2 = 4 ||x||^2."""

    def forward(self, x, y=None):
        return (x ** 2).flatten(1).sum(1)


@pytest.mark.parametrize("augmented", [False, True])
def test_r1_takes_the_gradient_at_the_reals_or_at_what_d_saw(augmented):
    real = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    seen = real + 1.0  # e.g. after DiffAugment's brightness
    ctx = StepContext(0, None, Square(), real, None, real, None, real_seen=seen)
    x = seen if augmented else real
    assert R1(augmented=augmented).penalty(ctx).item() == pytest.approx((4 * (x ** 2).sum(1)).mean().item())


class Seen(Hook):
    name = "seen"

    def __init__(self):
        self.pairs = []

    def on_d_loss(self, loss, ctx):
        self.pairs.append((ctx.real, ctx.real_seen))
        return loss


@pytest.mark.parametrize("tricks, differs", [("[diffaugment]", True), ("[]", False)])
def test_the_step_hands_hooks_the_reals_as_d_saw_them(tricks, differs, cfg_factory):
    run = build_run(cfg_factory(f"tricks={tricks}", "train.steps=2"))
    spy = Seen()
    run.tricks.append(spy)
    train(run)
    real, seen = spy.pairs[0]
    assert seen.shape == real.shape and (not torch.equal(seen, real)) == differs


@pytest.mark.parametrize("overrides, fragment", [
    (["loss=wgan"], "unrolled's look-ahead steps of D cannot clip D's weights as loss=wgan does"),
    (["tricks=[unrolled,weight_clip]"], "cannot clip D's weights as weight_clip does"),
    (["optimizer.clip_grad_norm=1.0"], "do not clip gradients as optimizer.clip_grad_norm does"),
])
def test_unrolled_refuses_what_its_look_ahead_cannot_follow(overrides, fragment, cfg_factory):
    with pytest.raises(ConfigError) as e:
        build_run(cfg_factory(*RING, "tricks=[unrolled]", *overrides))
    assert fragment in str(e.value) and "\n" not in str(e.value)
    assert build_run(cfg_factory(*RING, "tricks=[unrolled]", "loss=wgan_gp", "overwrite=true")).tricks[0].name == "unrolled"


def test_a_classifier_accuracy_ranks_highest_first():
    assert table.higher_is_better("acgan_acc_real") and table.higher_is_better("metrics/acgan_acc_fake")
