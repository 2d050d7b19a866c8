"""Architecture tricks, up/down-sampling choices, replay, checkpoint swap and EMA."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganexp.errors import ConfigError
from ganexp.models.dcgan import DCGANDiscriminator, DCGANGenerator
from ganexp.models.mlp import MLPDiscriminator
from ganexp.tricks.architecture import (MinibatchDiscrimination, MinibatchDiscriminationLayer, MinibatchStddev,
                                        MinibatchStddevLayer, SpectralNorm, _is_sn)
from ganexp.tricks.ema import EMA
from ganexp.tricks.memory import CheckpointSwap, ExperienceReplay
from ganexp.tricks.vbn import VirtualBatchNorm, VirtualBatchNormTrick
from tests.conftest import points_G, set_up, setup_context


def dcgan_pair(**g):
    return (DCGANGenerator(channels=1, resolution=16, z_dim=8, ngf=8, **g),
            DCGANDiscriminator(channels=1, resolution=16, ndf=8, num_classes=3))


def largest_singular_values(D):
    out = {}
    for name, m in D.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            w = m.weight.detach()
            out[name] = torch.linalg.matrix_norm(w.flatten(1), ord=2).item()
    return out


def test_spectral_norm_keeps_every_d_layer_at_sigma_1():
    torch.manual_seed(0)
    G, D = dcgan_pair()
    before = largest_singular_values(D)
    assert all(abs(s - 1) > 0.2 for s in before.values())  # N(0, 0.02) init is far from 1
    sn = SpectralNorm()
    G, D = sn.modify_models(G, D)
    sn.setup(setup_context(G, D))
    x, y = torch.randn(16, 1, 16, 16), torch.randint(3, (16,))
    # one power iteration per training forward; the 3-row embedding's top singular values are close
    # together, so its estimate converges slowly (30 forwards leave it up to 2% off across seeds)
    for _ in range(200):
        D(x, y)
    sigmas = largest_singular_values(D)
    assert set(sigmas) == set(before) and len(sn.layers) == len(before)  # convs, head and the projection embedding
    assert all(s == pytest.approx(1.0, abs=0.02) for s in sigmas.values()), sigmas
    logged = sn.scalars(1)
    assert all(v.item() == pytest.approx(1.0, abs=0.02) for k, v in logged.items() if k.startswith("sigma/"))
    assert {f"sigma_raw/{n}" for n in sigmas} <= set(logged)
    assert not any(_is_sn(m) for m in G.modules())
    G, _ = SpectralNorm(generator=True).modify_models(*dcgan_pair())
    assert any(_is_sn(m) for m in G.modules())


def test_minibatch_discrimination_layer_by_hand():
    layer = MinibatchDiscriminationLayer(1, num_kernels=1, kernel_dim=1)
    with torch.no_grad():
        layer.T.weight.fill_(1.0)
    out = layer(torch.tensor([[0.0], [1.0], [3.0]]))
    # o_i = sum_{j != i} exp(-|f_i - f_j|)
    e = math.exp
    expected = [[0.0, e(-1) + e(-3)], [1.0, e(-1) + e(-2)], [3.0, e(-3) + e(-2)]]
    torch.testing.assert_close(out, torch.tensor(expected))


def test_minibatch_stddev_layer_by_hand():
    f = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [5.0, 5.0]])
    # groups of 2: samples (0, 2) with std 1 and (1, 3) with std 2
    torch.testing.assert_close(MinibatchStddevLayer(2)(f)[:, 2], torch.tensor([1.0, 2.0, 1.0, 2.0]))
    assert MinibatchStddevLayer(4)(f[:3]).shape == (3, 3)  # a group size that does not divide the batch shrinks


@pytest.mark.parametrize("trick, extra", [(MinibatchDiscrimination(num_kernels=6), 6), (MinibatchStddev(), 1)])
def test_batch_layers_make_d_see_the_rest_of_the_batch(trick, extra):
    D = MLPDiscriminator(shape=(2,), is_image=False, hidden=[16], num_classes=3)
    x, y = torch.randn(8, 2), torch.randint(3, (8,))
    other = torch.cat([x[:1], torch.randn(7, 2)])
    assert torch.equal(D(x, y)[0], D(other, y)[0])  # plain D: sample 0's score is its own business
    _, D = trick.modify_models(None, D)
    assert D.feat_dim == 16 + extra and D.head.in_features == 16 + extra and D.embed.embedding_dim == 16 + extra
    assert D.features(x).shape == (8, 16 + extra) and D(x, y).shape == (8,)
    assert not torch.equal(D(x, y)[0], D(other, y)[0])


def test_batch_layers_get_spectral_norm_when_d_has_it():
    D = MLPDiscriminator(shape=(2,), is_image=False, hidden=[16])
    _, D = SpectralNorm().modify_models(None, D)
    _, D = MinibatchDiscrimination().modify_models(None, D)
    assert _is_sn(D.head) and _is_sn(D.body[2].T)


def test_virtual_batch_norm_layer_by_hand():
    vbn = VirtualBatchNorm(nn.BatchNorm1d(1), n_ref=2)
    out = vbn(torch.tensor([[0.0], [2.0], [4.0]]))
    # reference rows: mean 1, var 1 -> -1, 1.  New row 4: mean (2 * 1 + 4) / 3 = 2,
    # mean square (2 * 2 + 16) / 3 = 20/3, var 20/3 - 4 = 8/3 -> (4 - 2) / sqrt(8/3)
    torch.testing.assert_close(out.squeeze(1), torch.tensor([-1.0, 1.0, 2 / math.sqrt(8 / 3)]), atol=1e-4, rtol=0)


def test_virtual_batch_norm_makes_each_sample_independent_of_its_batch():
    G, D = dcgan_pair()
    z = torch.randn(8, 8)
    other = torch.cat([z[:1], torch.randn(7, 8)])
    assert not torch.allclose(G(z)[0], G(other)[0])  # batch norm in training mode mixes the batch
    G, _ = VirtualBatchNormTrick(n_ref=16).modify_models(G, D)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in G.modules())
    assert G(z).shape == (8, 1, 16, 16) and G(z[:1]).shape == (1, 1, 16, 16)
    torch.testing.assert_close(G(z)[0], G(other)[0])
    assert "vbn_reference.z" in G.state_dict()


def test_virtual_batch_norm_needs_batch_norm_in_g():
    with pytest.raises(ConfigError, match="^virtual_batch_norm needs batch norm in the generator .*; MLPGenerator has none$"):
        VirtualBatchNormTrick().modify_models(points_G(), None)


@pytest.mark.parametrize("mode, layer", [("convt", nn.ConvTranspose2d), ("pixelshuffle", nn.PixelShuffle),
                                         ("nearest", nn.Upsample)])
def test_upsampling_choices(mode, layer):
    G = DCGANGenerator(channels=3, resolution=32, z_dim=8, ngf=8, upsample=mode)
    kinds = {type(m) for m in G.modules()}
    assert layer in kinds and ({nn.PixelShuffle, nn.Upsample} - {layer}).isdisjoint(kinds)
    assert G(torch.randn(4, 8)).shape == (4, 3, 32, 32)


@pytest.mark.parametrize("mode, has_pool", [("strided", False), ("avgpool", True)])
def test_downsampling_choices(mode, has_pool):
    D = DCGANDiscriminator(channels=3, resolution=32, ndf=8, downsample=mode)
    assert any(isinstance(m, nn.AvgPool2d) for m in D.modules()) == has_pool
    strides = {m.stride for m in D.modules() if isinstance(m, nn.Conv2d)}
    assert strides == ({(1, 1)} if has_pool else {(2, 2)})
    assert D(torch.randn(4, 3, 32, 32)).shape == (4,)


# --- memory -------------------------------------------------------------------------------

def test_experience_replay_mixes_past_fakes_in_the_set_ratio():
    replay = set_up(ExperienceReplay(capacity=20, ratio=0.25), batch_size=8)  # 2 of 8 from the past
    for step in range(6):
        x, y = torch.full((8, 3), float(step)), torch.full((8,), step)
        out, out_y = replay.on_fake(x, y, step)
        assert out.shape == x.shape and torch.equal(out[:, 0].long(), out_y)
        if step == 0:
            assert torch.equal(out, x)  # nothing to replay yet
        else:
            assert (out[:6] == step).all() and (out[6:] < step).all()
    assert replay.count == 48 and replay.scalars(6) == {"fill": 1.0}
    assert set(replay.x[:, 0].tolist()) <= set(range(6))


def swap_models():
    G, D = nn.Linear(1, 1), nn.Linear(1, 1)
    for m in (G, D):
        nn.init.zeros_(m.weight)
    return G, D


def set_weights(value, *models):
    with torch.no_grad():
        for m in models:
            m.weight.fill_(value)


def test_checkpoint_swap_trains_against_old_snapshots():
    G, D = swap_models()
    swap = set_up(CheckpointSwap(every=1, keep=2, prob=1.0, swap="both"), G=G, D=D, d_steps=2)
    assert not swap.allows_fake_reuse
    x = torch.zeros(1)
    swap.on_real(x, None, 0)  # no snapshot yet: nothing to swap
    swap.after_d_step(0), swap.on_real(x, None, 0), swap.after_d_step(0), swap.after_g_step(0)
    assert len(swap.snapshots) == 1  # weights 0
    set_weights(5.0, G, D)  # training moved on
    swap.on_real(x, None, 1)
    assert G.weight.item() == 0.0 and D.weight.item() == 5.0  # D's fakes come from the old G
    swap.after_d_step(1), swap.on_real(x, None, 1)
    assert G.weight.item() == 0.0  # still old in the second D step
    swap.after_d_step(1)
    assert G.weight.item() == 5.0 and D.weight.item() == 0.0  # G trains against the old D
    swap.after_g_step(1)
    assert G.weight.item() == 5.0 and D.weight.item() == 5.0 and len(swap.snapshots) == 2
    state = swap.state_dict()
    again = set_up(CheckpointSwap(every=1, keep=2, prob=1.0), G=G, D=D)
    again.load_state_dict(state)
    assert [s["G"][0].item() for s in again.snapshots] == [0.0, 5.0] and again.rng.random() == swap.rng.random()


def test_ema_weights_equal_the_hand_computed_average():
    G = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    set_weights(0.0, G[0])
    ema = set_up(EMA(decay=0.5, start=2), G=G)
    expected = []
    for step, w in enumerate([1.0, 2.0, 4.0, 0.0]):
        set_weights(w, G[0])
        with torch.no_grad():
            G[1].running_mean.fill_(step)
        ema.after_g_step(step)
        expected.append(w if step < 2 else 0.5 * expected[-1] + 0.5 * w)  # before start: tracks G exactly
        assert ema.ema[0].weight.item() == pytest.approx(expected[-1])
        assert ema.ema[1].running_mean.item() == step  # buffers are copied
    assert expected == [1.0, 2.0, 3.0, 1.5]
    assert ema.sampling_generator(G) is ema.ema and not ema.ema.training
    assert not any(p.requires_grad for p in ema.ema.parameters())
    assert ema.scalars(1) == {"decay": 0.0} and ema.scalars(2) == {"decay": 0.5}
