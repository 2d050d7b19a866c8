"""loss=nsgan_r1: the non-saturating loss with lazy R1 on D, carried by the loss so that
tricks=[...] cannot drop it."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ganexp.build import build_run
from ganexp.errors import ConfigError
from ganexp.hooks import StepContext
from ganexp.losses import NSGAN, NSGANR1
from tests.conftest import Linear2D, make_cfg, read_events, setup_context


def step_ctx(D):
    return StepContext(0, None, D, torch.randn(16, 2), None, torch.randn(16, 2), None)


def test_the_losss_r1_is_gamma_over_2_grad_norm_squared_on_every_kth_d_step_times_k():
    loss = NSGANR1(gamma=4.0, every=2)
    D = Linear2D([3.0, 4.0])  # ||grad_x D|| = 5 everywhere: R1 = 4 / 2 * 25 = 50, times every = 100
    loss.setup(setup_context(D=D, loss=loss))
    out, logs = [], []
    for _ in range(4):
        ctx = step_ctx(D)
        out.append(loss.on_d_loss(torch.tensor(1.0), ctx).item())
        logs.append(ctx.logs["loss/r1"].item())
    assert out == pytest.approx([101.0, 1.0, 101.0, 1.0])
    assert logs == pytest.approx([25.0] * 4)  # the last computed E||grad||^2, logged on every step
    resumed = NSGANR1(gamma=4.0, every=2)
    resumed.load_state_dict(loss.state_dict())  # the D-step count is checkpointed: the next step is due
    assert resumed.on_d_loss(torch.tensor(0.0), step_ctx(D)).item() == pytest.approx(100.0)


def test_gamma_zero_is_the_plain_non_saturating_loss():
    loss, plain = NSGANR1(gamma=0.0), NSGAN()
    d_real, d_fake = torch.randn(8), torch.randn(8)
    t = plain.targets(8, torch.device("cpu"))
    assert torch.equal(loss.d_loss(d_real, d_fake, t), plain.d_loss(d_real, d_fake, t))
    assert torch.equal(loss.g_loss(d_fake, t), plain.g_loss(d_fake, t))
    x = torch.tensor(2.0)
    assert loss.on_d_loss(x, step_ctx(Linear2D([3.0, 4.0]))) is x
    assert not loss.double_backward and NSGANR1().double_backward  # what train.sync_bn refuses: only R1 that runs


def test_a_bad_every_names_the_losss_option(tmp_path):
    with pytest.raises(ConfigError, match=r"^loss.every must be >= 1 \(R1 on one D step in every\), got 0$"):
        build_run(make_cfg(["loss.every=0"], tmp_path))


def test_changing_the_tricks_keeps_the_losss_r1_and_auto_norm_builds_d_without_norm(tmp_path):
    run = build_run(make_cfg(["loss=nsgan_r1", "tricks=[ema]"], tmp_path))
    assert isinstance(run.loss, NSGANR1) and (run.loss.r1.gamma, run.loss.r1.every) == (1.0, 4)
    assert [type(t).__name__ for t in run.tricks] == ["EMA"]
    norms = (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)
    assert not any(isinstance(m, norms) for m in run.D.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in run.G.modules())  # G keeps its batch norm


def test_r1_as_a_trick_replaces_the_losss_r1_with_a_note(tmp_path):
    run = build_run(make_cfg(["loss=nsgan_r1", "tricks=[r1]", "tricks.r1.gamma=4", "tricks.r1.every=1"], tmp_path))
    assert any("tricks=[r1] replaces the R1 of loss=nsgan_r1" in n for n in run.notes)
    D = Linear2D([3.0, 4.0])
    assert run.loss.on_d_loss(torch.tensor(1.0), step_ctx(D)).item() == 1.0  # the loss adds nothing
    assert run.tricks[0].on_d_loss(torch.tensor(1.0), step_ctx(D)).item() == pytest.approx(1.0 + 4 / 2 * 25)


def test_the_default_run_logs_its_r1_to_tensorboard(tmp_path):
    from ganexp.engine import train

    train(build_run(make_cfg([], tmp_path)))  # the default: loss=nsgan_r1, R1 computed on the first of 4 D steps
    events = read_events(tmp_path)
    r1 = [e.value for e in events.Scalars("loss/r1")]
    assert len(r1) == 2 and all(v > 0 for v in r1)  # logged at steps 2 and 4, the last computed value
