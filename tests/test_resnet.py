"""model=resnet (SNGAN/BigGAN residual networks), its presets, and the acgan_acc metric."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ganexp.build import build_run
from ganexp.engine import train
from ganexp.errors import ConfigError
from ganexp.losses import Hinge
from ganexp.metrics.evaluators import ACGANAccuracy
from ganexp.models.attention import SelfAttention
from ganexp.models.base import ConditionalBatchNorm
from ganexp.models.resnet import DBlock, ResNetDiscriminator, ResNetGenerator, VectorBatchNorm
from tests.conftest import adam, make_cfg, preset_run, read_events, training_inputs, training_outputs

SMALL = ["model=resnet", "generator.ch=8", "discriminator.ch=8"]


# --- the networks at 32, 64 and 128 px ---------------------------------------------------------

@pytest.mark.parametrize("resolution, up, down, plain", [(32, 3, 2, 2), (64, 4, 4, 1), (128, 5, 5, 1)])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_resnet_builds_and_takes_a_step_at_each_resolution(resolution, up, down, plain, num_classes):
    """SNGAN's 32 px layout (3 up-blocks; D two down-blocks, two plain ones) and BigGAN's 64/128 px
    one (an up-block per doubling from 4x4; D down to 4x4 then one plain block), conditional or not."""
    torch.manual_seed(0)
    G = ResNetGenerator(channels=3, resolution=resolution, z_dim=16, ch=16, num_classes=num_classes)
    D = ResNetDiscriminator(channels=3, resolution=resolution, ch=16, num_classes=num_classes)
    blocks = [m for m in D.body if isinstance(m, DBlock)]
    assert len(G.blocks) == up and [b.down for b in blocks] == [True] * down + [False] * plain
    z, y = torch.randn(2, 16), (torch.tensor([1, 7]) if num_classes else None)
    x = G(z, y)
    assert x.shape == (2, 3, resolution, resolution) and x.abs().max() <= 1
    assert (D.embed is not None) == bool(num_classes)
    opt = torch.optim.Adam([*G.parameters(), *D.parameters()], 1e-3)
    before = [p.detach().clone() for p in (G.linear.weight, blocks[0].c1.parametrizations.weight.original)]
    loss = Hinge().d_loss(D(torch.rand(2, 3, resolution, resolution) * 2 - 1, y), D(x, y), None)
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = (G.linear.weight, blocks[0].c1.parametrizations.weight.original)
    assert math.isfinite(loss.item()) and all(not torch.equal(a, b) for a, b in zip(before, after))


def test_resnet_widths_follow_sngan_at_32_px_and_biggan_above():
    G32, D32 = ResNetGenerator(3, 32, ch=256), ResNetDiscriminator(3, 32, ch=128)
    assert [b.c1.out_channels for b in G32.blocks] == [256] * 3
    assert [b.c2.out_channels for b in D32.body if isinstance(b, DBlock)] == [128] * 4
    G128, D128 = ResNetGenerator(3, 128, ch=1024), ResNetDiscriminator(3, 128, ch=1024)
    assert [b.c1.out_channels for b in G128.blocks] == [1024, 512, 256, 128, 64]  # BigGAN: 16, 8, 4, 2, 1 x 64
    assert [b.c2.out_channels for b in D128.body if isinstance(b, DBlock)] == [64, 128, 256, 512, 1024, 1024]  # BigGAN: 1, 2, 4, 8, 16, 16 x 64


@pytest.mark.parametrize("loss", ["gan", "nsgan", "lsgan", "hinge", "wgan_gp"])
@pytest.mark.parametrize("conditional", [False, True])
def test_resnet_trains_on_the_28px_digits_with_each_loss(loss, conditional, cfg_factory):
    run = build_run(cfg_factory(*SMALL, f"loss={loss}", f"conditional={str(conditional).lower()}"))
    assert run.info.shape == (1, 28, 28) and len(run.G.blocks) == 2  # 7 -> 14 -> 28
    g0, d0 = run.G.linear.weight.detach().clone(), run.D.head.parametrizations.weight.original.detach().clone()
    final = train(run)
    assert not torch.equal(g0, run.G.linear.weight) and not torch.equal(d0, run.D.head.parametrizations.weight.original)
    acc = read_events(run.out_dir)
    for tag in ("loss/d", "loss/g"):
        assert [(e.step, e.value) for e in acc.Scalars(tag)][-1] == (4, final[tag])
    # conditional: a row per class (16 fixed latents hold one of each of the 10); else a 4 x 4 grid (28 px, 2 px apart)
    (grid,) = acc.Images("samples/grid")
    assert (grid.width, grid.height) == ((30 + 2, 10 * 30 + 2) if conditional else (4 * 30 + 2, 4 * 30 + 2))


def test_a_resolution_resnet_cannot_build_fails_in_one_line():
    with pytest.raises(ConfigError, match=r"^resnet needs a resolution of 4\.\.7 times a power of two .* got 36$"):
        ResNetGenerator(3, 36)


# --- spectral norm ------------------------------------------------------------------------------

def _sn_layers(m: nn.Module) -> list[nn.Module]:
    return [c for c in m.modules() if isinstance(c, (nn.Conv2d, nn.Linear, nn.Embedding))]


def test_spectral_norm_keeps_sigma_near_one_on_every_resnet_d_layer():
    torch.manual_seed(0)
    D = ResNetDiscriminator(channels=1, resolution=32, ch=16, num_classes=10, attention=16)
    layers = _sn_layers(D)
    assert len(layers) == 4 * 2 + 2 + 3 + 1 + 1 and all(parametrize.is_parametrized(m, "weight") for m in layers)
    with torch.no_grad():  # raw weights far from norm 1, then power iterations on training forwards
        for m in layers:
            m.parametrizations.weight.original.mul_(5.0)
        for _ in range(30):
            D(torch.randn(4, 1, 32, 32), torch.randint(10, (4,)))
    D.eval()
    for m in layers:
        w = m.weight.flatten(1)
        assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.02), m
    assert not any(parametrize.is_parametrized(m, "weight") for m in _sn_layers(ResNetDiscriminator(1, 32, ch=8, spectral_norm=False)))


def test_generator_spectral_norm_leaves_the_class_tables_alone():
    G = ResNetGenerator(1, 32, z_dim=8, ch=8, num_classes=10, spectral_norm=True)
    tables = {id(t) for m in G.modules() if isinstance(m, ConditionalBatchNorm) for t in (m.gain, m.bias)}
    for m in _sn_layers(G):
        assert parametrize.is_parametrized(m, "weight") == (id(m) not in tables)
    assert not any(parametrize.is_parametrized(m, "weight") for m in _sn_layers(ResNetGenerator(1, 32, ch=8)))


# --- self-attention -----------------------------------------------------------------------------

@pytest.mark.parametrize("at, g_shape, d_shape", [(16, (8, 16, 16), (8, 16, 16)), (8, (8, 8, 8), (8, 8, 8))])
def test_attention_sits_at_the_chosen_resolution_in_g_and_d(at, g_shape, d_shape):
    G = ResNetGenerator(3, 32, z_dim=8, ch=8, attention=at)
    D = ResNetDiscriminator(3, 32, ch=8, attention=at)
    seen = []
    for m in (G, D):
        (block,) = [b for b in m.modules() if isinstance(b, SelfAttention)]
        block.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape[1:])))
    D(G(torch.randn(2, 8)))
    assert seen == [g_shape, d_shape]


def test_attention_through_the_config_and_a_size_resnet_lacks(cfg_factory):
    run = build_run(cfg_factory(*SMALL, "generator.attention=14", "discriminator.attention=7"))
    assert sum(isinstance(m, SelfAttention) for m in run.G.modules()) == 1
    assert sum(isinstance(m, SelfAttention) for m in run.D.modules()) == 1
    with pytest.raises(ConfigError) as e:
        build_run(cfg_factory(*SMALL, "generator.attention=16"))
    assert str(e.value) == ("generator.attention=16 is not a feature-map resolution of resnet's generator at 28 px; "
                            "choose one of 14, 28 (0: none)")


# --- conditioning -------------------------------------------------------------------------------

def test_projection_d_equals_linear_plus_embedding_inner_product():
    """D(x, y) = w . h + b + <E[y], h>, with h = sum over positions of ReLU(blocks(x))."""
    torch.manual_seed(0)
    D = ResNetDiscriminator(channels=1, resolution=16, ch=4, num_classes=3, spectral_norm=False).eval()
    x, y = torch.randn(2, 1, 16, 16), torch.tensor([2, 0])
    feat = x
    for block in list(D.body)[:-1]:
        feat = block(feat)
    h = feat.clamp(min=0).sum(dim=(2, 3))
    w, b, E = D.head.weight[0], D.head.bias[0], D.embed.weight
    expected = torch.stack([h[i] @ w + b + E[y[i]] @ h[i] for i in range(2)])
    assert torch.allclose(D(x, y), expected, atol=1e-5)
    assert not torch.allclose(D(x, torch.tensor([1, 1])), expected, atol=1e-3)  # the label matters


def test_conditional_batch_norm_uses_the_gain_and_shift_of_each_sample_class():
    torch.manual_seed(0)
    G = ResNetGenerator(1, 16, z_dim=8, ch=4, num_classes=3)
    norms = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm)]
    assert len(norms) == 2 * len(G.blocks)  # two per block; the output BN is unconditional
    cbn = G.blocks[0].b1
    with torch.no_grad():
        cbn.gain.weight.copy_(torch.arange(12.0).view(3, 4))
        cbn.bias.weight.copy_(-torch.arange(12.0).view(3, 4))
    x, y = torch.randn(5, 4, 4, 4), torch.tensor([0, 2, 1, 2, 0])
    G.label_slot.y = y
    out = cbn(x)
    normed = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / (x.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
    gain, bias = torch.arange(12.0).view(3, 4)[y], -torch.arange(12.0).view(3, 4)[y]
    assert torch.allclose(out, normed * gain[:, :, None, None] + bias[:, :, None, None], atol=1e-4)


def test_biggan_shared_embedding_and_hierarchical_latent_reach_each_block():
    """Block i's batch norms see [shared(y), z chunk i+1]; the first chunk feeds the linear layer."""
    torch.manual_seed(0)
    G = ResNetGenerator(1, 32, z_dim=12, ch=4, num_classes=3, shared_embedding=5, hierarchical=True)
    assert G.splits == [3, 3, 3, 3] and G.linear.in_features == 3
    norms = [m for m in G.modules() if isinstance(m, VectorBatchNorm)]
    assert len(norms) == 6 and all(n.gain.in_features == 5 + 3 for n in norms)
    seen = []
    for block in G.blocks:
        block.b1.register_forward_hook(lambda mod, inp, out: seen.append(inp[1]))
    z, y = torch.randn(2, 12), torch.tensor([2, 1])
    G(z, y)
    for i, c in enumerate(seen):
        assert torch.equal(c, torch.cat([G.shared(y), z[:, 3 * (i + 1):3 * (i + 2)]], dim=1))
    assert not torch.allclose(G(z, y), G(z, torch.tensor([0, 0])))  # the label reaches the output


def test_shared_embedding_without_labels_fails_in_one_line(cfg_factory):
    with pytest.raises(ConfigError, match="^generator.shared_embedding needs conditional=true"):
        build_run(cfg_factory(*SMALL, "generator.shared_embedding=16"))


def test_resnet_with_an_acgan_head_and_concat_trains(cfg_factory):
    run = build_run(cfg_factory(*SMALL, "conditional=true", "discriminator.cond=acgan"))
    assert run.D.classifier is not None and parametrize.is_parametrized(run.D.classifier, "weight")
    assert [t.name for t in run.tricks] == ["acgan"]
    before = run.D.classifier.parametrizations.weight.original.detach().clone()
    train(run)
    assert not torch.equal(before, run.D.classifier.parametrizations.weight.original)
    run = build_run(cfg_factory(*SMALL, "conditional=true", "discriminator.cond=concat", "overwrite=true"))
    assert run.D.body[0].c1.in_channels == 1 + 10


def test_pacgan_widens_both_layers_that_read_the_image_and_trains(cfg_factory):
    run = build_run(cfg_factory(*SMALL, "loss=nsgan", "tricks=[pacgan]"))
    first = run.D.body[0]
    assert first.c1.in_channels == 2 and first.c_sc.in_channels == 2  # two 1-channel digits per pack
    assert parametrize.is_parametrized(first.c1, "weight") and parametrize.is_parametrized(first.c_sc, "weight")
    seen = {name: training_inputs(getattr(first, name)) for name in ("c1", "c_sc")}
    d_in, d_out = training_inputs(run.D), training_outputs(run.D)
    train(run)
    assert len(d_in) == len(d_out) == 3 * 4 and all(o.shape == (4,) for o in d_out)  # a logit per pack of 2
    for (x, *_), (c1,), (c_sc,) in zip(d_in, seen["c1"], seen["c_sc"], strict=True):
        packs = torch.cat([x[0::2], x[1::2]], dim=1)  # both read the packs: samples 2k and 2k + 1 side by side in channels
        assert torch.equal(c1, packs) and torch.equal(c_sc, F.avg_pool2d(packs, 2))  # the shortcut pools first


@pytest.mark.parametrize("init", ["xavier", "ortho"])
def test_pacgan_gives_the_widened_layers_the_models_own_init(init, cfg_factory):
    run = build_run(cfg_factory(*SMALL, "tricks=[pacgan]", f"discriminator.init={init}"))
    first = run.D.body[0]
    for name, gain in (("c1", math.sqrt(2)), ("c_sc", 1.0)):  # the residual path's gain, the shortcut's
        layer = getattr(first, name)
        w = layer.parametrizations.weight.original.detach().flatten(1)
        assert not layer.bias.detach().any()
        if init == "xavier":  # Glorot-uniform on the widened fan-in, not DCGAN's N(0, 0.02)
            bound = gain * math.sqrt(6 / (w.shape[1] + w.shape[0] * layer.kernel_size[0] * layer.kernel_size[1]))
            assert w.abs().max() <= bound + 1e-6 and w.std() == pytest.approx(bound / math.sqrt(3), rel=0.25)
        else:  # orthogonal: orthonormal rows, or columns when there are more rows than columns
            gram = w @ w.t() if w.shape[0] <= w.shape[1] else w.t() @ w
            assert torch.allclose(gram, torch.eye(len(gram)), atol=1e-5)


# --- the acgan_acc metric -----------------------------------------------------------------------

class ToyD(nn.Module):
    """A class head that predicts the rounded first pixel."""

    classifier = nn.Identity()

    def classify(self, x):
        return F.one_hot(x[:, 0, 0, 0].round().long(), 4).float()


class ToyData:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def real_batches(self, n, batch_size):
        for i in range(0, min(n, len(self.x)), batch_size):
            yield self.x[i:i + batch_size], self.y[i:i + batch_size]


class ToySampler:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def batches(self, n):
        for i in range(0, n, 3):
            yield self.x[i:i + 3], self.y[i:i + 3]


def images(values):
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1)


def test_acgan_accuracy_matches_a_hand_count():
    # real: predictions 0 1 2 3 0 1 2 3 0 1 vs labels 0 1 2 0 0 1 3 3 1 1 -> 7 of 10 right
    real = ToyData(images([0, 1, 2, 3, 0, 1, 2, 3, 0, 1]), torch.tensor([0, 1, 2, 0, 0, 1, 3, 3, 1, 1]))
    # generated: predictions 3 3 2 1 0 vs asked 3 0 0 1 2 -> 2 of 5 right
    fake = ToySampler(images([3, 3, 2, 1, 0]), torch.tensor([3, 0, 0, 1, 2]))
    out = ACGANAccuracy(real, D=ToyD(), num_samples=10, batch_size=4)(fake, step=0)
    assert out["acgan_acc_real"] == pytest.approx(0.7) and out["acgan_acc_fake"] == pytest.approx(0.4)


def test_acgan_accuracy_refuses_a_discriminator_without_a_class_head(cfg_factory):
    with pytest.raises(ConfigError) as e:
        build_run(cfg_factory(*SMALL, "conditional=true", "metrics=[acgan_acc]"))
    assert str(e.value) == ("acgan_acc scores D's auxiliary class head and this discriminator has none: "
                            "train with conditional=true discriminator.cond=acgan")


def test_metrics_with_keyword_arguments_are_not_handed_the_discriminator(cfg_factory):
    run = build_run(cfg_factory("conditional=true", "discriminator.cond=acgan", "metrics=[acgan_acc,pr_clf]"))
    assert [type(m).__name__ for m in run.evaluators] == ["ACGANAccuracy", "PrecisionRecall"]
    assert run.evaluators[0].D is run.D


def test_acgan_accuracy_is_logged_in_training_and_by_ganexp_eval(cfg_factory):
    from omegaconf import OmegaConf

    from ganexp.sample.evaluate import evaluate, metric_nodes
    from ganexp.metrics.acgan import classifier_accuracy

    run = build_run(cfg_factory("model=dcgan", "conditional=true", "discriminator.cond=acgan", "metrics=[acgan_acc]",
                                "eval.every=4", "eval.num_samples=64", "eval.batch_size=32"))
    final = train(run)
    run.D.eval()
    assert final["metrics/acgan_acc_real"] == pytest.approx(classifier_accuracy(run.D, [run.data.take(64)]))
    # `ganexp eval` rebuilds D from the checkpoint: the same accuracies (one batch of 64 latents in both)
    cfg = OmegaConf.create({"ckpt": str(run.out_dir), "device": "cpu", "ema": True, "num_samples": 64, "batch_size": 256,
                            "out": str(run.out_dir / "eval.json"), "inception_weights": None,
                            "eval": {"metrics": metric_nodes(["acgan_acc"])}})
    values, _ = evaluate(cfg)
    assert values["acgan_acc_real"] == pytest.approx(final["metrics/acgan_acc_real"])
    assert values["acgan_acc_fake"] == pytest.approx(final["metrics/acgan_acc_fake"])


# --- presets ------------------------------------------------------------------------------------

def test_sngan_cifar10_is_miyato_et_al(tmp_path, monkeypatch):
    cfg = make_cfg(["experiment=sngan_cifar10"], tiny=False)
    assert (cfg.train.steps, cfg.train.batch_size, cfg.optimizer.schedule, cfg.optimizer.decay_steps) == (50_000, 64, "linear", 50_000)
    run = preset_run("sngan_cifar10", tmp_path, monkeypatch)
    assert type(run.G).__name__ == "ResNetGenerator" and type(run.loss) is Hinge
    assert adam(run.opt_g, 2e-4, (0.0, 0.9)) and adam(run.opt_d, 2e-4, (0.0, 0.9)) and run.schedule.d_steps == 5
    assert all(parametrize.is_parametrized(m, "weight") for m in _sn_layers(run.D))
    assert sum(p.numel() for p in run.G.parameters()) == 4_276_739  # SNGAN's 32 px G (mimicry: 4.3M)


def test_biggan_cifar10_has_shared_embedding_hierarchy_ema_and_ortho(tmp_path, monkeypatch):
    cfg = make_cfg(["experiment=biggan_cifar10"], tiny=False)
    assert (cfg.train.steps, cfg.train.batch_size, cfg.optimizer.d_steps) == (100_000, 64, 5)
    run = preset_run("biggan_cifar10", tmp_path, monkeypatch)
    assert adam(run.opt_g, 2e-4, (0.5, 0.999)) and adam(run.opt_d, 2e-4, (0.5, 0.999))
    assert run.G.num_classes == 10 and run.G.shared.embedding_dim == 128 and run.G.hierarchical
    assert run.G.splits == [20, 20, 20, 20] and run.D.embed is not None
    assert sorted(t.name for t in run.tricks) == ["ema", "orthogonal_reg"]
    ema = next(t for t in run.tricks if t.name == "ema")
    assert (ema.decay, ema.start) == (0.9999, 1000)
    assert next(t for t in run.tricks if t.name == "orthogonal_reg").beta == 1e-4
    z, y = run.latent.sample(4)
    assert torch.isfinite(run.G(z, y)).all()  # spectral norm on G's conditional batch-norm maps too


#: BigGAN's reference code (BigGAN-PyTorch, BigGAN.py: G_arch, D_arch) in its own units of ch
#: (ganexp's ch = 16 of them); SNGAN's 32 px networks keep ch throughout (Miyato et al. 2018, App. B.4).
REFERENCE = {
    32: {"G_in": [1, 1, 1], "G_out": [1, 1, 1], "D_out": [1, 1, 1, 1], "unit": 1},
    64: {"G_in": [16, 16, 8, 4], "G_out": [16, 8, 4, 2], "D_out": [1, 2, 4, 8, 16], "unit": 16},
    128: {"G_in": [16, 16, 8, 4, 2], "G_out": [16, 8, 4, 2, 1], "D_out": [1, 2, 4, 8, 16, 16], "unit": 16},
}


@pytest.mark.parametrize("resolution", sorted(REFERENCE))
def test_block_widths_are_the_reference_tables(resolution):
    ref, ch = REFERENCE[resolution], 256
    unit = ch // ref["unit"]
    G = ResNetGenerator(3, resolution, z_dim=8, ch=ch)
    D = ResNetDiscriminator(3, resolution, ch=ch, spectral_norm=False)
    assert [b.c1.in_channels for b in G.blocks] == [m * unit for m in ref["G_in"]]
    assert [b.c2.out_channels for b in G.blocks] == [m * unit for m in ref["G_out"]]
    blocks = [b for b in D.body if isinstance(b, DBlock)]
    assert [b.c2.out_channels for b in blocks] == [m * unit for m in ref["D_out"]]
    assert [b.c1.in_channels for b in blocks] == [3] + [m * unit for m in ref["D_out"][:-1]]
