"""StyleGAN2 (ganexp/models/stylegan2.py, style_layers.py), path length (tricks/path_length.py) and the
W-space sample modes (sample/mixing.py), checked against hand-computed values and the reference's layout."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganexp.errors import ConfigError
from ganexp.hooks import StepContext
from ganexp.models.style_layers import EqualConv2d, EqualLinear, MappingNetwork, modulated_conv2d
from ganexp.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from ganexp.sample.mixing import mixing_grid, truncated
from ganexp.tricks.path_length import PathLength, path_lengths

SMALL = dict(z_dim=16, w_dim=16, mapping_layers=2, channel_base=64, channel_max=8)


def nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_demodulation_gives_unit_variance_whatever_the_style():
    torch.manual_seed(0)
    weight = torch.randn(16, 32, 3, 3)
    x = torch.randn(2, 32, 40, 40)
    for scale in (0.01, 1.0, 50.0):
        styles = torch.rand(2, 32) * scale + 1e-3 * scale  # positive styles of very different sizes
        out = modulated_conv2d(x, weight, styles, demodulate=True)[:, :, 1:-1, 1:-1]  # inside the zero padding
        assert out.std().item() == pytest.approx(1.0, abs=0.05), scale
        raw = modulated_conv2d(x, weight, styles, demodulate=False)[:, :, 1:-1, 1:-1]
        assert abs(raw.std().item() - 1.0) > 0.3  # without demodulation the style's size shows


def test_modulated_conv_is_the_reference_formula_per_sample():
    torch.manual_seed(1)
    x, w, s = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    out = modulated_conv2d(x, w, s, demodulate=True)
    for b in range(3):
        wb = w * s[b][None, :, None, None]  # Eq. 1
        wb = wb / (wb.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()  # Eq. 3
        assert torch.allclose(out[b], nn.functional.conv2d(x[b:b + 1], wb, padding=1)[0], atol=1e-5)


def test_equalised_weights_are_stored_at_unit_variance_and_the_mapping_runs_at_lr_001():
    torch.manual_seed(0)
    conv, fc = EqualConv2d(64, 64, 3), EqualLinear(256, 256)
    assert conv.weight.std().item() == pytest.approx(1.0, abs=0.02) and fc.weight.std().item() == pytest.approx(1.0, abs=0.02)
    slow = EqualLinear(256, 256, lr_mul=0.01)
    assert (slow.weight * 0.01).std().item() == pytest.approx(1.0, abs=0.02)  # stored at 1/lr_mul, used at 1/sqrt(fan_in)
    fast = EqualLinear(256, 256)
    with torch.no_grad():
        fast.weight.copy_(slow.weight * 0.01)  # the same effective weights
    x = torch.randn(8, 256)
    assert torch.allclose(slow(x), fast(x), atol=1e-5)
    slow, fast, x = slow.double(), fast.double(), x.double()  # float32 steps on weights ~100 would round
    moves = []
    for layer in (slow, fast):
        before = (layer.weight * layer.weight_gain).detach().clone()
        opt = torch.optim.Adam([layer.weight], lr=1e-3, eps=1e-14)
        layer(x).square().sum().backward()
        opt.step()  # Adam's first step moves every stored weight by lr * sign(grad)
        moves.append(((layer.weight * layer.weight_gain).detach() - before).abs().mean())
    assert (moves[0] / moves[1]).item() == pytest.approx(0.01, rel=1e-3)


def test_mapping_tracks_the_mean_w_in_training_only():
    torch.manual_seed(0)
    m = MappingNetwork(8, 8, num_ws=3, layers=2, w_avg_beta=0.5)
    z = torch.randn(32, 8)
    ws = m(z)
    assert ws.shape == (32, 3, 8) and torch.equal(ws[:, 0], ws[:, 2])
    assert torch.allclose(m.w_avg, 0.5 * ws[:, 0].mean(0))  # lerp from 0 with beta = 0.5
    m.eval()
    before = m.w_avg.clone()
    m(torch.randn(32, 8))
    assert torch.equal(m.w_avg, before)


def test_layout_matches_the_reference_parameter_counts_at_32px():
    """NVlabs/stylegan2-ada-pytorch's networks (commit d72cc7d), counted on the CPU: its CIFAR-10 config (map=2,
    channel_base 32768, channel_max 512) has G 19,947,539 and D 21,507,073 ('resnet') / 20,720,641 ('orig')
    parameters unconditionally; 8 mapping layers at channel_base 16384 give G 21,523,475."""
    assert nparams(StyleGAN2Generator(3, 32, z_dim=512, w_dim=512, mapping_layers=2, channel_base=32768,
                                      channel_max=512)) == 19_947_539
    assert nparams(StyleGAN2Generator(3, 32, z_dim=512, w_dim=512, channel_base=16384, channel_max=512)) == 21_523_475
    assert nparams(StyleGAN2Discriminator(3, 32, channel_base=32768, channel_max=512)) == 21_507_073
    assert nparams(StyleGAN2Discriminator(3, 32, channel_base=32768, channel_max=512, residual=False)) == 20_720_641
    # conditional G: the label's embedding (10 x 512 + 512) and the wider first mapping layer, as the reference (20,215,315)
    assert nparams(StyleGAN2Generator(3, 32, z_dim=512, w_dim=512, mapping_layers=2, channel_base=32768, channel_max=512,
                                      num_classes=10)) == 20_215_315


@pytest.mark.parametrize("res, num_ws", [(16, 6), (28, 6), (32, 8), (64, 10)])
def test_shapes_at_each_resolution_conditional_and_not(res, num_ws):
    for classes in (0, 10):
        G = StyleGAN2Generator(3, res, num_classes=classes, **SMALL)
        D = StyleGAN2Discriminator(3, res, num_classes=classes, channel_base=64, channel_max=8)
        y = torch.arange(8) % 10 if classes else None
        x = G(torch.randn(8, 16), y)
        assert G.num_ws == num_ws and x.shape == (8, 3, res, res) and D(x, y).shape == (8,)
    with pytest.raises(ConfigError, match="stylegan2 needs a power of two from 16 up or 28"):
        StyleGAN2Generator(3, 24 * 3, **SMALL)


def test_style_mixing_mixes_in_training_only():
    torch.manual_seed(0)
    G = StyleGAN2Generator(1, 16, mixing=1.0, **SMALL)
    z = torch.randn(4, 16)
    ws = G.mapping(z, update_avg=False)
    mixed = G.mix(ws, None)
    late = ~(mixed == ws).all(dim=(0, 2))
    assert late.any() and not late[0]  # the first style is the latent's own; from the cut on, another's
    cut = int(late.nonzero()[0])
    assert late[cut:].all() and torch.equal(mixed[:, :cut], ws[:, :cut])
    G.eval()
    assert torch.equal(G.mix(ws, None), ws)
    G.train()
    G.mixing = 0.0
    assert torch.equal(G.mix(ws, None), ws)


def test_truncation_psi_0_is_the_mean_w_image_and_psi_1_the_identity():
    torch.manual_seed(0)
    G = StyleGAN2Generator(1, 16, **SMALL)
    G.mapping(torch.randn(64, 16))  # a tracked mean that is not zero
    G.eval()
    for p in G.modules():
        if hasattr(p, "noise_strength"):
            p.noise_strength.data.fill_(0.0)  # noise off: the images are functions of w alone
    z = torch.randn(5, 16)
    w_avg = G.mapping.w_avg.expand(5, G.num_ws, -1)
    assert torch.allclose(truncated(G, z, None, 0.0), G.synthesis(w_avg), atol=1e-6)
    assert torch.allclose(truncated(G, z, None, 1.0), G(z), atol=1e-6)
    half = truncated(G, z, None, 0.5)
    assert not torch.allclose(half, G(z), atol=1e-3)
    with pytest.raises(ConfigError, match=r"psi must be in \[0, 1\]"):
        truncated(G, z, None, 1.5)


def test_mixing_grid_takes_coarse_styles_from_the_row_and_fine_from_the_column():
    torch.manual_seed(0)
    G = StyleGAN2Generator(1, 16, **SMALL).eval()
    for m in G.modules():
        if hasattr(m, "noise_strength"):
            m.noise_strength.data.fill_(0.0)
    zr, zc = torch.randn(2, 16), torch.randn(3, 16)
    x, nrow = mixing_grid(G, zr, zc, None, coarse=2, psi=1.0)
    assert nrow == 4 and x.shape == (12, 1, 16, 16)
    wr, wc = G.ws(zr), G.ws(zc)
    cell = G.synthesis(torch.cat([wr[1:2, :2], wc[2:3, 2:]], dim=1))
    assert torch.allclose(x[2 * 4 + 3], cell[0], atol=1e-5)  # row 1, column 2 (after the header row and column)
    assert torch.allclose(x[1:4], G.synthesis(wc), atol=1e-5) and torch.allclose(x[4], G.synthesis(wr)[0], atol=1e-5)


class TinyStyleG(nn.Module):
    """A linear style generator: image = sum_l A_l w_l, so J_w^T n is A_l^T n for each copy l."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.A = nn.Parameter(torch.randn(2, 4 * 4, 3))  # 2 styles of 3 dims -> a 4x4 image
        self.num_ws = 2

    def ws(self, z, y=None, psi=1.0):
        return z[:, None, :].repeat(1, 2, 1)

    def synthesis(self, ws):
        return torch.einsum("lpd,bld->bp", self.A, ws).view(-1, 1, 4, 4)


def test_path_length_is_the_hand_computed_vector_jacobian_product_and_lazy():
    G = TinyStyleG()
    z, noise = torch.randn(5, 3), torch.randn(5, 1, 4, 4)
    n = noise.view(5, 16)
    by_hand = torch.stack([(n @ G.A[lyr]).square().sum(1) for lyr in range(2)]).mean(0).sqrt()  # ||A_l^T n||^2 averaged over l
    assert torch.allclose(path_lengths(G, z, None, noise), by_hand, atol=1e-5)

    pl = PathLength(weight=2.0, every=4, decay=0.01)
    a = 0.01 * by_hand.mean()  # the running mean moves from 0 toward this batch's mean first
    assert torch.allclose(pl.penalty(G, z, None, noise), (by_hand - a).square().mean(), atol=1e-5)
    assert torch.allclose(pl.pl_mean, a)

    z4 = torch.randn(4, 3)

    class Latent:
        def z(self, k):
            return z4[:k]

    torch.manual_seed(7)
    value = float(PathLength(weight=2.0, every=4).penalty(G, z4, None).detach())
    pl = PathLength(weight=2.0, every=4)
    pl.latent, pl.n = Latent(), 4
    added = []
    for step in range(8):
        torch.manual_seed(7)  # the same direction n as above
        ctx = StepContext(step, G, None, None, None, None, None)
        added.append(float(pl.on_g_loss(torch.tensor(0.0), ctx)))
        assert "trick/path_length/value" in ctx.logs
    assert added[0] == pytest.approx(4 * 2.0 * value, rel=1e-5)  # lazy: x every, as R1's lazy scaling
    assert added[1:4] == [0.0] * 3 and added[4] > 0 and added[5:] == [0.0] * 3


def test_path_length_refuses_a_generator_without_w():
    from ganexp.models.dcgan import DCGANGenerator

    class Ctx:
        G, latent, local_batch, device = DCGANGenerator(1, 16, z_dim=8, ngf=4), None, 8, torch.device("cpu")

    with pytest.raises(ConfigError, match="path_length regularises a style generator's W space; DCGANGenerator has none"):
        PathLength().setup(Ctx())


def test_pacgan_widens_the_equalised_input_layer():
    from ganexp.tricks.pacgan import PacGAN

    D = StyleGAN2Discriminator(1, 16, channel_base=64, channel_max=8)
    _, D = PacGAN(2).modify_models(None, D)
    assert isinstance(D.body[0], EqualConv2d) and D.body[0].in_channels == 2
    assert D.body[0].weight_gain == pytest.approx(1 / math.sqrt(2))
    assert D(torch.randn(8, 1, 16, 16)).shape == (4,)
