"""Model variants: how G and D see the class label (generator.cond, discriminator.cond), the
relaxed Bernoulli output for binary images (generator.output) and binary data (dataset.binarize)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganexp.build import build_run
from ganexp.data.base import DataInfo, LoaderData, TensorData
from ganexp.engine import train
from ganexp.errors import ConfigError
from ganexp.metrics.cache import dataset_fingerprint
from ganexp.models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from ganexp.models.base import RelaxedBernoulli
from ganexp.sample.rebuild import load_generator
from tests.conftest import make_cfg, spy, training_inputs, training_outputs

K, Z = 10, 8
SHAPE = (1, 16, 16)


def generator(kind: str, **kw) -> nn.Module:
    if kind == "mlp":
        return MLPGenerator(shape=SHAPE, is_image=True, z_dim=Z, hidden=[32], **kw)
    return DCGANGenerator(channels=1, resolution=16, z_dim=Z, ngf=8, **kw)


def discriminator(kind: str, **kw) -> nn.Module:
    if kind == "mlp":
        return MLPDiscriminator(shape=SHAPE, is_image=True, hidden=[32, 16], **kw)
    return DCGANDiscriminator(channels=1, resolution=16, ndf=8, **kw)


def first_layer(model: nn.Module) -> nn.Module:
    return next(m for m in model.body.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)))


def width(layer: nn.Module) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


# --- conditioning ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mlp", "dcgan"])
def test_onehot_generator_sees_z_concatenated_with_the_onehot_label(kind):
    torch.manual_seed(0)
    G = generator(kind, num_classes=K, cond="onehot").eval()
    assert G.embed is None and not any(isinstance(m, nn.Embedding) for m in G.modules())
    assert width(first_layer(G)) == Z + K
    z, y = torch.randn(6, Z), torch.tensor([0, 1, 2, 3, 4, 9])
    assert torch.equal(G.latent_input(z, y), torch.cat([z, F.one_hot(y, K).float()], 1))
    assert not torch.allclose(G(z, y), G(z, (y + 1) % K))
    with pytest.raises(ValueError, match="class labels"):
        G(z)


@pytest.mark.parametrize("kind", ["mlp", "dcgan"])
def test_embed_generator_is_the_default_learned_embedding(kind):
    G = generator(kind, num_classes=K)
    assert G.cond == "embed" and isinstance(G.embed, nn.Embedding) and width(first_layer(G)) == Z + K


@pytest.mark.parametrize("kind", ["mlp", "dcgan"])
def test_concat_discriminator_sees_the_label_in_its_input(kind):
    torch.manual_seed(0)
    D = discriminator(kind, num_classes=K, cond="concat").eval()
    base = discriminator(kind).eval()
    assert D.embed is None  # no projection term: the label enters through the input only
    assert width(first_layer(D)) == width(first_layer(base)) + K
    x, y = torch.rand(6, *SHAPE) * 2 - 1, torch.tensor([0, 1, 2, 3, 4, 9])
    inp = D.label_input(x, y)
    if kind == "dcgan":  # one constant feature map per class
        assert inp.shape == (6, 1 + K, 16, 16) and torch.equal(inp[:, 1:], F.one_hot(y, K).float()[:, :, None, None].expand(-1, -1, 16, 16))
    else:  # appended to the flattened image
        assert inp.shape == (6, 256 + K) and torch.equal(inp[:, 256:], F.one_hot(y, K).float())
    out, other = D(x, y), D(x, (y + 1) % K)
    assert out.shape == (6,) and (out - other).abs().min() > 0
    assert not torch.allclose(D.features(x, y), D.features(x, (y + 1) % K))
    with pytest.raises(ValueError, match="class labels"):
        D(x)


def test_projection_features_do_not_depend_on_the_label():
    D = discriminator("dcgan", num_classes=K).eval()
    x = torch.rand(4, *SHAPE)
    assert D.cond == "projection" and torch.equal(D.features(x, torch.zeros(4).long()), D.features(x))
    assert not torch.allclose(D(x, torch.zeros(4).long()), D(x, torch.ones(4).long()))


@pytest.mark.parametrize("override, allowed", [
    ("generator.cond=onehots", "embed, onehot, cbn"),
    ("discriminator.cond=proj", "projection, concat"),
    ("generator.output=sigmoid", "tanh, relaxed_bernoulli, straight_through"),
    ("generator.temperature=0", "must be > 0"),
])
def test_bad_values_fail_with_one_line(override, allowed, tmp_path):
    with pytest.raises(ConfigError) as e:
        build_run(make_cfg(["conditional=true", "dataset=sklearn_digits", override], tmp_path))
    assert allowed in str(e.value) and "\n" not in str(e.value)


def test_relaxed_bernoulli_on_points_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="output=tanh"):
        build_run(make_cfg(["dataset=ring8", "model=mlp", "generator.output=relaxed_bernoulli"], tmp_path))


VARIANTS = [  # (model, generator.cond, discriminator.cond, tricks)
    ("mlp", "onehot", "concat", []),
    ("mlp", "embed", "concat", []),
    ("dcgan", "onehot", "concat", []),
    ("dcgan", "onehot", "projection", []),
    ("dcgan", "embed", "concat", ["spectral_norm", "minibatch_discrimination"]),
    ("mlp", "onehot", "concat", ["minibatch_stddev"]),
    ("dcgan", "cbn", "projection", []),
]


@pytest.mark.parametrize("model, g_cond, d_cond, tricks", VARIANTS)
def test_each_conditioning_variant_builds_and_trains(model, g_cond, d_cond, tricks, tmp_path):
    run = build_run(make_cfg(["loss=nsgan", f"model={model}", "dataset=sklearn_digits", "dataset.resolution=16", "conditional=true",
                              f"generator.cond={g_cond}", f"discriminator.cond={d_cond}", f"tricks=[{','.join(tricks)}]"],
                             tmp_path))
    assert (run.G.cond, run.D.cond) == (g_cond, d_cond)
    if d_cond == "concat":
        assert width(first_layer(run.D)) == (1 + K if model == "dcgan" else 256 + K)
    g0 = [p.detach().clone() for p in run.G.parameters()]
    real, g_in, d_in = spy(run.data, "sample"), training_inputs(run.G), training_inputs(run.D)
    train(run)
    assert any(not torch.equal(a, b) for a, b in zip(g0, run.G.parameters()))
    # the labels reach both players: per step G(z, y), then D(real, its labels), D(fake, y) in D's step and in G's
    assert len(g_in) == 4 and len(d_in) == 3 * 4
    for s in range(4):
        y = g_in[s][1]
        assert y.shape == (8,) and torch.equal(d_in[3 * s][1], real[s][1][1])
        assert torch.equal(d_in[3 * s + 1][1], y) and torch.equal(d_in[3 * s + 2][1], y)
    assert len(torch.cat([args[1] for args in g_in]).unique()) > 5
    run.G.eval()
    z, _ = run.latent.sample(8)
    with torch.no_grad():  # the trained players answer the label
        zero, one = torch.zeros(8, dtype=torch.long), torch.ones(8, dtype=torch.long)
        assert not torch.allclose(run.G(z, zero), run.G(z, one))
        x = run.G(z, zero)
        assert not torch.allclose(run.D(x, zero), run.D(x, one))


def test_concat_features_carry_the_label_for_feature_matching():
    """Feature matching compares E f(x, y) on real and fake; for a concat D, f needs y."""
    from ganexp.tricks.objective import feature_distance

    D = discriminator("mlp", num_classes=K, cond="concat")
    x, y = torch.rand(8, *SHAPE), torch.arange(8) % K
    assert feature_distance(D.features(x, y), D.features(x, y)) == 0
    assert feature_distance(D.features(x, y), D.features(x, (y + 3) % K)) > 0


def test_feature_matching_with_a_concat_discriminator(tmp_path, monkeypatch):
    from ganexp.tricks.objective import FeatureMatching, feature_distance

    seen = []  # the G steps' contexts, as the trick got them
    on_g_loss = FeatureMatching.on_g_loss
    monkeypatch.setattr(FeatureMatching, "on_g_loss", lambda self, loss, ctx: seen.append(ctx) or on_g_loss(self, loss, ctx))
    run = build_run(make_cfg(["model=mlp", "dataset=sklearn_digits", "dataset.resolution=16", "conditional=true",
                              "discriminator.cond=concat", "tricks=[feature_matching]"], tmp_path))
    final = train(run)
    # the last logged value: D's (final) features of the last G step's real and fake batches, each with its labels
    ctx = seen[-1]
    with torch.no_grad():
        want = feature_distance(run.D.features(ctx.real, ctx.y_real), run.D.features(ctx.fake.detach(), ctx.y_fake))
        without_y = feature_distance(run.D.features(ctx.real, ctx.y_fake), run.D.features(ctx.fake.detach(), ctx.y_real))
    assert final["trick/feature_matching/value"] == pytest.approx(want.item(), rel=1e-5)
    assert not math.isclose(want.item(), without_y.item(), rel_tol=1e-3)  # the labels matter to the value
    x, y = run.data.sample(8)
    assert not torch.equal(run.D.features(x, y), run.D.features(x, (y + 1) % 10))  # the matched features see y


@pytest.mark.parametrize("kind", ["mlp", "dcgan"])
def test_cbn_generator_takes_the_label_through_per_class_norm_gains(kind):
    from ganexp.models.base import ConditionalBatchNorm

    torch.manual_seed(0)
    kw = {"batch_norm": True} if kind == "mlp" else {}
    G = generator(kind, num_classes=K, cond="cbn", **kw)
    cbns = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm)]
    assert cbns and not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) and m.affine for m in G.modules())
    assert width(first_layer(G)) == Z  # nothing appended to z
    G.eval()
    z, y = torch.randn(6, Z), torch.tensor([0, 1, 1, 3, 4, 9])
    assert torch.allclose(G(z, y), G(z, (y + 2) % K))  # gains start at 1, shifts at 0: plain BN
    with torch.no_grad():
        cbns[0].gain.weight[1] *= 3
    changed = (G(z, y) - G(z, (y + 2) % K)).flatten(1).abs().amax(1) > 1e-5
    assert changed.tolist() == [False, True, True, False, False, True]  # only rows where one side is class 1
    with pytest.raises(ValueError, match="class labels"):
        G(z)


def test_cbn_needs_batch_norms_and_keeps_its_tables_out_of_spectral_norm(tmp_path):
    from torch.nn.utils import parametrize

    from ganexp.models.base import ConditionalBatchNorm

    with pytest.raises(ConfigError, match="generator.cond=cbn .* generator.batch_norm=true"):
        build_run(make_cfg(["model=mlp", "conditional=true", "generator.cond=cbn"], tmp_path / "a"))
    run = build_run(make_cfg(["conditional=true", "generator.cond=cbn", "tricks=[spectral_norm,virtual_batch_norm,ema]",
                              "tricks.spectral_norm.generator=true"], tmp_path / "b"))
    cbn = next(m for m in run.G.modules() if isinstance(m, ConditionalBatchNorm))
    assert not parametrize.is_parametrized(cbn.gain) and parametrize.is_parametrized(first_layer(run.G))
    gains = cbn.gain.weight.detach().clone()
    final = train(run)
    assert math.isfinite(final["loss/g"]) and not torch.equal(gains, cbn.gain.weight)  # the per-class gains learn


def test_instance_norm_normalises_each_sample_on_its_own():
    torch.manual_seed(0)
    z = torch.randn(8, Z)
    for norm, alone in (("instance", True), ("batch", False)):
        G = generator("dcgan", norm=norm).train()
        assert any(isinstance(m, nn.InstanceNorm2d) for m in G.modules()) == alone
        assert torch.allclose(G(z[:2])[0], G(z)[0], atol=1e-5) == alone  # batch norm depends on the batch


# --- discrete output --------------------------------------------------------------------------

def test_relaxed_bernoulli_is_torch_distributions_relaxed_bernoulli_mapped_to_unit_range():
    logits, T = torch.randn(4000), 0.5
    torch.manual_seed(1)
    ours = RelaxedBernoulli(T).train()(logits)
    torch.manual_seed(1)
    ref = torch.distributions.RelaxedBernoulli(torch.tensor(T), logits=logits).rsample()
    assert torch.allclose(ours, 2 * ref - 1, atol=1e-4)


def test_relaxed_bernoulli_hard_sample_in_eval_has_probability_sigmoid_of_the_logit():
    torch.manual_seed(0)
    logits = torch.tensor([-2.0, 0.0, 1.0]).repeat(40000, 1)
    x = RelaxedBernoulli(0.5).eval()(logits)
    assert set(x.unique().tolist()) == {-1.0, 1.0}
    p = (x == 1).float().mean(0)
    assert torch.allclose(p, torch.sigmoid(logits[0]), atol=0.01)


@pytest.mark.parametrize("kind", ["mlp", "dcgan"])
def test_relaxed_bernoulli_generator(kind):
    torch.manual_seed(0)
    G = generator(kind, output="relaxed_bernoulli", temperature=0.5)
    z = torch.randn(16, Z)
    x = G.train()(z)
    assert x.shape == (16, *SHAPE) and x.min() >= -1 and x.max() <= 1
    assert ((x > -1) & (x < 1)).float().mean() > 0.5  # relaxed: mostly strictly inside
    x.pow(2).mean().backward()  # any loss of x: the reparameterised sample passes gradients
    grads = [p.grad for p in G.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    hard = G.eval()(z)
    assert set(hard.unique().tolist()) == {-1.0, 1.0} and not hard.requires_grad


def test_straight_through_is_hard_forward_with_the_relaxed_gradient():
    logits = torch.randn(3000, requires_grad=True)
    torch.manual_seed(2)
    st = RelaxedBernoulli(0.5, straight_through=True).train()(logits)
    assert set(st.unique().tolist()) == {-1.0, 1.0}  # D sees binary fakes, like the binary data
    (st * torch.arange(3000.0)).sum().backward()
    g_st, logits.grad = logits.grad.clone(), None
    torch.manual_seed(2)  # the same noise: the relaxed sample's gradient
    (RelaxedBernoulli(0.5).train()(logits) * torch.arange(3000.0)).sum().backward()
    assert g_st.abs().sum() > 0 and torch.allclose(g_st, logits.grad)
    torch.manual_seed(2)
    hard = RelaxedBernoulli(0.5).eval()(logits.detach())
    assert torch.equal(st.detach(), hard)  # and its value is the hard sample


def test_lower_temperature_gives_samples_closer_to_plus_minus_one():
    logits = torch.randn(20000)
    dist = {}
    for T in (0.1, 0.5, 2.0):
        torch.manual_seed(0)
        dist[T] = (1 - RelaxedBernoulli(T).train()(logits).abs()).mean().item()
    assert dist[0.1] < dist[0.5] < dist[2.0]
    assert dist[0.1] < 0.1 and dist[2.0] > 0.5


# --- binary data ------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["digits", "sklearn_digits"])
def test_binarize_gives_only_plus_minus_one_pixels(dataset, tmp_path):
    cont = build_run(make_cfg([f"dataset={dataset}"], tmp_path / "c")).data
    data = build_run(make_cfg([f"dataset={dataset}", "dataset.binarize=true"], tmp_path / "b")).data
    assert data.info.binary and not cont.info.binary
    x, _ = data.take(500)
    assert set(x.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(x > 0, cont.take(500)[0] > 0)  # thresholded at mid-grey
    assert set(data.sample(64)[0].unique().tolist()) <= {-1.0, 1.0}
    assert dataset_fingerprint(data) != dataset_fingerprint(cont)  # no shared metric caches


def test_binarize_a_streamed_dataset():
    x = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
    ds = torch.utils.data.TensorDataset(x, torch.zeros(32, dtype=torch.long))
    data = LoaderData(ds, DataInfo("image", (1, 8, 8), 0, "tiny"), num_workers=0).binarize()
    batch, _ = data.sample(8)
    assert set(batch.unique().tolist()) == {-1.0, 1.0} and data.info.as_dict()["binary"] is True


def test_binarize_needs_images():
    with pytest.raises(ConfigError, match="image dataset"):
        TensorData(torch.randn(10, 2), None, DataInfo("points", (2,), 0, "ring8")).binarize()


@pytest.mark.parametrize("model, output", [("mlp", "relaxed_bernoulli"), ("dcgan", "relaxed_bernoulli"),
                                           ("dcgan", "straight_through")])
def test_binary_digits_with_a_relaxed_bernoulli_generator_train(model, output, tmp_path):
    """`ganexp train dataset.binarize=true generator.output=relaxed_bernoulli model=...`."""
    run = build_run(make_cfg([f"model={model}", "dataset.binarize=true", f"generator.output={output}"], tmp_path))
    assert isinstance(run.G.body[-1], RelaxedBernoulli)
    assert run.G.body[-1].straight_through == (output == "straight_through")
    real, fakes = spy(run.data, "sample"), training_outputs(run.G)
    train(run)
    assert all(set(x.unique().tolist()) == {-1.0, 1.0} for _, (x, _) in real)  # D sees binary digits
    trained = torch.cat(fakes)
    if output == "straight_through":  # the forward value is the hard sample in training too
        assert set(trained.unique().tolist()) == {-1.0, 1.0}
    else:  # relaxed: soft values between the two
        assert ((trained > -1) & (trained < 1)).float().mean() > 0.5
    G, latent, _ = load_generator(str(run.out_dir), device="cpu")
    with torch.no_grad():  # samples are hard {-1, 1} pixels
        assert set(G.eval()(*latent.sample(16)).unique().tolist()) == {-1.0, 1.0}
    assert (run.out_dir / "samples" / "step_0000004.png").is_file()


def test_input_scale_multiplies_what_the_discriminator_sees():
    """The unrolled GAN's 2D D scales the ring by 1/4 before its first layer (Metz et al. 2017, App. A)."""
    torch.manual_seed(0)
    scaled = MLPDiscriminator(shape=(2,), is_image=False, hidden=[16], act="relu", input_scale=0.25)
    plain = MLPDiscriminator(shape=(2,), is_image=False, hidden=[16], act="relu")
    with torch.no_grad():  # the scale has no parameter of its own: same weights, in the same order
        for a, b in zip(plain.parameters(), scaled.parameters(), strict=True):
            a.copy_(b)
    x = torch.randn(8, 2) * 2
    assert torch.allclose(scaled(x), plain(x / 4), atol=1e-6)
    assert not torch.allclose(scaled(x), plain(x), atol=1e-3)


def test_orthogonal_init_gives_orthogonal_weights_of_the_gain_and_zero_biases():
    g = MLPGenerator(shape=(2,), is_image=False, z_dim=256, hidden=[128, 128], act="relu", init="orthogonal", init_gain=0.8)
    linears = [m for m in g.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    for m in linears:
        w = m.weight  # (out, in): rows orthogonal when out <= in, columns otherwise
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        assert torch.allclose(gram, 0.64 * torch.eye(gram.shape[0]), atol=1e-4)
        assert not m.bias.any()
