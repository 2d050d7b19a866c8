"""Label, noise, penalty and objective tricks against numbers computed by hand."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganexp.errors import ConfigError
from ganexp.hooks import StepContext, Targets
from ganexp.losses import LSGAN, NSGAN, WGAN, WGANGP, Hinge
from ganexp.models.base import Discriminator
from ganexp.models.mlp import MLPDiscriminator, MLPGenerator
from ganexp.tricks.discrete import TemperatureAnneal
from ganexp.tricks.labels import LabelFlip, LabelSmoothing, LabelSwap, SoftLabels
from ganexp.tricks.noise import GDropout, GLayerNoise, InstanceNoise
from ganexp.tricks.objective import FeatureMatching
from ganexp.tricks.penalties import DRAGAN, R1, GradientPenalty, HistoricalAveraging, OrthogonalReg, WeightClip
from tests.conftest import Linear2D, points_G, set_up

CPU = torch.device("cpu")


def ctx_for(D, real, fake, G=None, step=0):
    return StepContext(step, G, D, real, None, fake, None)


# --- labels -------------------------------------------------------------------------------

def targets(loss, trick, n=8):
    return set_up(trick, loss=loss, batch_size=n).on_targets(loss.targets(n, CPU), 0)


def test_label_smoothing_sets_the_real_target_only():
    t = targets(NSGAN(), LabelSmoothing(0.9))
    assert (t.real, t.fake, t.gen) == (pytest.approx(0.9), 0.0, 1.0)
    # on LSGAN's Pearson coding (fake -1, real 1) 0.9 of the way is 0.8
    assert targets(LSGAN(a=-1.0, b=1.0, c=0.0), LabelSmoothing(0.9)).real == pytest.approx(0.8)
    # the D loss with target 0.9 on a real logit of 2: -(0.9 log s(2) + 0.1 log(1 - s(2))) = 0.326928
    loss = NSGAN().d_loss(torch.tensor([2.0]), torch.tensor([-50.0]), t)
    assert loss.item() == pytest.approx(0.9 * 0.126928 + 0.1 * 2.126928, abs=1e-5)


def test_soft_labels_draw_per_sample_targets_in_their_ranges():
    t = targets(NSGAN(), SoftLabels(), n=20000)
    assert t.real.shape == t.fake.shape == (20000,) and t.gen == 1.0
    assert 0.7 <= t.real.min() and t.real.max() <= 1.2 and t.real.mean().item() == pytest.approx(0.95, abs=0.01)
    assert 0.0 <= t.fake.min() and t.fake.max() <= 0.3 and t.fake.mean().item() == pytest.approx(0.15, abs=0.01)


def test_label_flip_swaps_targets_with_probability_p():
    t = targets(NSGAN(), LabelFlip(p=0.25), n=20000)
    assert set(t.real.unique().tolist()) == {0.0, 1.0} and t.gen == 1.0
    assert (t.real == 0).float().mean().item() == pytest.approx(0.25, abs=0.015)
    assert (t.fake == 1).float().mean().item() == pytest.approx(0.25, abs=0.015)
    assert (targets(NSGAN(), LabelFlip(p=0.0)).real == 1).all()


def test_label_swap_uses_real_0_fake_1():
    pearson = targets(LSGAN(a=-1.0, b=1.0, c=0.0), LabelSwap())  # b=1, a=-1, c=0 reflect to -1, 1, 0
    assert (pearson.real, pearson.fake, pearson.gen) == (-1.0, 1.0, 0.0)
    t = targets(NSGAN(), LabelSwap())
    assert (t.real, t.fake, t.gen) == (0.0, 1.0, 0.0)
    x = torch.tensor([2.0, -1.0])  # swapped labels on x == usual labels on -x
    assert NSGAN().d_loss(x, -x, t).item() == pytest.approx(NSGAN().d_loss(-x, x, Targets(1.0, 0.0, 1.0)).item())


@pytest.mark.parametrize("trick", [LabelSmoothing, SoftLabels, LabelFlip, LabelSwap])
@pytest.mark.parametrize("loss", [WGAN, WGANGP, Hinge])
def test_label_tricks_refuse_losses_without_targets(trick, loss):
    with pytest.raises(ConfigError, match=rf"^{trick.name} needs a loss with real/fake targets .*; loss is {loss.__name__}$"):
        set_up(trick(), loss=loss())


# --- noise --------------------------------------------------------------------------------

def test_temperature_anneal_sets_the_output_temperature_on_jangs_schedule():
    G = MLPGenerator((1, 4, 4), True, z_dim=4, hidden=[8], output="relaxed_bernoulli", temperature=0.3)
    anneal = set_up(TemperatureAnneal(start=1.0, min=0.5, rate=1e-3), G=G)
    x = torch.zeros(2, 1, 4, 4)
    for step, tau in [(0, 1.0), (100, math.exp(-0.1)), (500, math.exp(-0.5)), (693, 0.5), (5000, 0.5)]:
        anneal.on_real(x, None, step)
        assert G.body[-1].temperature == pytest.approx(tau, abs=1e-3) and anneal.scalars(step)["temperature"] == G.body[-1].temperature
    logits = torch.randn(20_000)
    soft = []
    for step in (0, 5000):  # the samples G makes get closer to {-1, 1} as tau falls
        anneal.on_real(x, None, step)
        torch.manual_seed(0)
        soft.append((1 - G.body[-1].train()(logits).abs()).mean().item())
    assert soft[1] < soft[0]
    with pytest.raises(ConfigError, match="start >= min > 0"):
        TemperatureAnneal(start=0.4, min=0.5)


def test_instance_noise_std_follows_its_linear_schedule():
    noise = InstanceNoise(std=0.2, anneal_steps=1000)
    x = torch.zeros(200_000)
    for step, std in [(0, 0.2), (250, 0.15), (500, 0.1), (999, 0.0002)]:
        assert noise.std_at(step) == pytest.approx(std)
        assert noise.on_d_input(x, step).std().item() == pytest.approx(std, rel=0.02)
        assert noise.scalars(step) == {"std": pytest.approx(std)}
    assert noise.on_d_input(x, 1000) is x and noise.on_d_input(x, 5000) is x
    assert InstanceNoise(0.3, anneal_steps=0).std_at(10**6) == 0.3


def hidden_output(G, z):
    """The output of G's first activation (after the tricks' forward hooks)."""
    seen = []
    handle = G.body[1].register_forward_hook(lambda m, a, out: seen.append(out))
    G(z)
    handle.remove()
    return seen[0]


def test_g_layer_noise_adds_noise_of_its_std_while_training_only():
    G = points_G()
    GLayerNoise(std=0.3).modify_models(G, None)
    z = torch.randn(64, 4)
    clean = hidden_output(G.eval(), z)
    assert torch.equal(clean, hidden_output(G, z))
    assert (hidden_output(G.train(), z) - clean).std().item() == pytest.approx(0.3, rel=0.05)
    assert len(G.body[-1]._forward_hooks) == 0  # the output layer (linear for points) is left alone


def test_g_dropout_stays_on_at_sample_time():
    G = points_G().eval()
    GDropout(p=0.5).modify_models(G, None)
    z = torch.randn(64, 4)
    h = hidden_output(G, z)
    assert (h == 0).float().mean().item() == pytest.approx(0.5, abs=0.03)  # LeakyReLU alone is never 0
    assert not torch.equal(G(z), G(z))


def test_g_tricks_need_hidden_activations():
    G = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    with pytest.raises(ConfigError, match="g_dropout needs activation layers in the generator; Sequential has none"):
        GDropout().modify_models(G, None)


# --- penalties ----------------------------------------------------------------------------

def linear_ctx(w=(3.0, 4.0)):  # ||grad D|| = 5 everywhere
    D = Linear2D(list(w))
    return ctx_for(D, torch.randn(16, 2), torch.randn(16, 2)), D


@pytest.mark.parametrize("trick, expected", [
    (GradientPenalty(weight=2.0, target=3.0), 2.0 * (5 - 3) ** 2),
    (R1(gamma=4.0), 4.0 / 2 * 25),
    (DRAGAN(weight=10.0, target=1.0), 10.0 * (5 - 1) ** 2),
])
def test_gradient_penalties_on_a_linear_critic(trick, expected):
    ctx, _ = linear_ctx()
    out = trick.on_d_loss(torch.tensor(1.0), ctx)
    assert out.item() == pytest.approx(1.0 + expected, rel=1e-5)
    assert f"trick/{trick.name}/value" in ctx.logs and not ctx.logs[f"trick/{trick.name}/value"].requires_grad


def test_gradient_penalty_drives_interpolate_gradient_norms_to_k():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1))
    critic = lambda x, y=None: D(x).squeeze(1)  # noqa: E731
    gp = GradientPenalty(weight=1.0, target=2.0)
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)
    real, fake = torch.randn(256, 2) + 2, torch.randn(256, 2) - 2

    def mean_norm():
        x = (real + fake).div(2).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x)
        return g.norm(dim=1).mean().item()

    assert abs(mean_norm() - 2.0) > 1.0
    for _ in range(300):
        loss = gp.on_d_loss(torch.zeros(()), ctx_for(critic, real, fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert mean_norm() == pytest.approx(2.0, abs=0.05)


def test_weight_clip_clamps_d_after_each_step():
    D = MLPDiscriminator(shape=(2,), is_image=False, hidden=[16])
    clip = set_up(WeightClip(0.01), D=D)
    clip.after_d_step(0)
    assert max(p.abs().max().item() for p in D.parameters()) <= 0.01
    assert 0 < clip.scalars(1)["at_clip_fraction"].item() <= 1


def test_penalties_that_repeat_the_loss_fail_at_build():
    with pytest.raises(ConfigError, match="gradient_penalty repeats the penalty loss=wgan_gp already has"):
        set_up(GradientPenalty(), loss=WGANGP())
    with pytest.raises(ConfigError, match="weight_clip repeats the clipping loss=wgan already does"):
        set_up(WeightClip(), loss=WGAN(), D=nn.Linear(1, 1))
    set_up(WeightClip(), loss=WGANGP(), D=nn.Linear(1, 1))  # WGAN-GP does not clip


def test_orthogonal_reg_penalises_off_diagonal_gram_entries():
    G = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        G.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))  # W W^T = [[5, 11], [11, 25]]
    reg = set_up(OrthogonalReg(beta=1e-2), G=G)
    ctx = ctx_for(None, None, None, G=G)
    assert reg.on_g_loss(torch.tensor(0.0), ctx).item() == pytest.approx(1e-2 * 2 * 11 ** 2)
    assert ctx.logs["trick/orthogonal_reg/value"].item() == pytest.approx(242.0)


def test_historical_averaging_pulls_toward_the_mean_of_past_parameters():
    D = Linear2D([0.0, 0.0])
    G = Linear2D([1.0, 1.0])
    ha = set_up(HistoricalAveraging(weight=0.5, decay_steps=100, g=False, d=True), D=D, G=G)
    ctx = ctx_for(D, None, None)
    assert ha.on_g_loss(torch.tensor(7.0), ctx).item() == 7.0  # G is off
    history = [torch.zeros(2)]
    for step, w in enumerate([[2.0, 0.0], [5.0, 1.0], [-1.0, 3.0]]):
        with torch.no_grad():
            D.w.copy_(torch.tensor(w))
        mean = torch.stack(history).mean(0)
        expected = 0.5 * (1 - step / 100) * (D.w.detach() - mean).pow(2).sum().item()
        assert ha.on_d_loss(torch.tensor(0.0), ctx_for(D, None, None, step=step)).item() == pytest.approx(expected)
        ha.after_d_step(step)
        history.append(D.w.detach().clone())
    torch.testing.assert_close(ha.avg["d"][0], torch.stack(history).mean(0))
    assert ha.scalars(50) == {"weight": 0.25} and ha.scalars(100) == {"weight": 0.0}


# --- objective ----------------------------------------------------------------------------

def test_feature_matching_g_loss_is_the_feature_distance():
    D = Discriminator(feat_dim=2)  # identity body: the features are x itself
    real = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # mean [1, 1]
    fake = torch.tensor([[1.0, 3.0], [1.0, 3.0]], requires_grad=True)  # mean [1, 3] -> ((0)^2 + 2^2) / 2 = 2
    fm = set_up(FeatureMatching(weight=0.5), D=D)
    ctx = ctx_for(D, real, fake)
    assert fm.on_g_loss(torch.tensor(1.0), ctx).item() == pytest.approx(1.0 + 0.5 * 2.0)
    assert ctx.logs["trick/feature_matching/value"].item() == pytest.approx(2.0)
    alone = set_up(FeatureMatching(weight=1.0, replace=True), D=D).on_g_loss(torch.tensor(1.0), ctx)
    assert alone.item() == pytest.approx(2.0)
    alone.backward()
    assert fake.grad is not None and math.isclose(fake.grad[:, 1].sum().item(), 2.0)  # d/d mean of (m - 3)^2 / 2
