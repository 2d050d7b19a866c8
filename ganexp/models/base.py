"""Shared shape of generators and discriminators, so tricks can reach into any model.

G(z, y) -> x.  D(x, y) = head(features(x, y)) [+ projection of y onto the features]:
tricks that add layers to D (minibatch discrimination, minibatch stddev) or need its
features (feature matching) work on ``D.body`` / ``D.features`` / ``D.head`` alone.

Conditioning (``conditional=true``): G sees [z, embed(y)] (``cond: embed``) or [z, onehot(y)]
(``cond: onehot``, Mirza & Osindero 2014); D adds <embed(y), features> (``cond: projection``,
Miyato & Koyama 2018) or sees onehot(y) concatenated to its input (``cond: concat``, Mirza &
Osindero 2014), as constant channels for images and appended to the flat input for an MLP;
or D's logit ignores y and a linear class head on the features, ``D.classify(x)``, predicts it
(``cond: acgan``, Odena et al. 2017; the ``acgan`` trick adds its cross-entropy terms).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganexp.errors import ConfigError

G_COND = ("embed", "onehot", "cbn")
D_COND = ("projection", "concat", "acgan")
OUTPUTS = ("tanh", "relaxed_bernoulli", "straight_through")


def choose(value: str, allowed: tuple[str, ...], key: str) -> str:
    if value not in allowed:
        raise ConfigError(f"unknown {key} '{value}'; choose one of {', '.join(allowed)}")
    return value


def dcgan_init_(module: nn.Module) -> None:
    """N(0, 0.02) weights, BN scale N(1, 0.02), zero biases (Radford et al. 2016, Sec. 4)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class RelaxedBernoulli(nn.Module):
    """Binary pixels in [-1, 1] from logits l: the Concrete / Gumbel-softmax relaxation of a
    Bernoulli (the binary Concrete of Maddison et al. 2017; Jang et al. 2017). In training,
    x = 2 sigmoid((l + log u - log(1 - u)) / temperature) - 1 with u ~ U(0, 1), a reparameterised
    sample of torch.distributions.RelaxedBernoulli, so gradients reach G. In eval mode, the hard
    sample it relaxes: x = 2 b - 1 with b ~ Bernoulli(sigmoid(l)), exactly {-1, 1}.

    ``straight_through``: in training too the forward value is the hard sample, and the gradient
    is the relaxed sample's (the straight-through Gumbel estimator, Jang et al. 2017, Sec. 2.2),
    so D never sees the soft values that tell fakes from binary real data."""

    def __init__(self, temperature: float = 0.5, straight_through: bool = False):
        super().__init__()
        self.temperature, self.straight_through = temperature, straight_through

    def forward(self, logits: Tensor) -> Tensor:
        u = torch.rand_like(logits, dtype=torch.float32).clamp_(1e-6, 1 - 1e-6)
        noise = (u.log() - (-u).log1p()).to(logits.dtype)  # Logistic(0, 1)
        hard = torch.where(logits + noise > 0, 1.0, -1.0).to(logits.dtype)  # P(l + noise > 0) = sigmoid(l)
        if not self.training:
            return hard
        soft = 2 * torch.sigmoid((logits + noise) / self.temperature) - 1
        return hard + (soft - soft.detach()) if self.straight_through else soft

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, straight_through={self.straight_through}"


def output_layer(output: str, temperature: float = 0.5) -> nn.Module:
    """G's last layer for images: ``tanh`` (continuous), ``relaxed_bernoulli`` or
    ``straight_through`` (binary pixels)."""
    choose(output, OUTPUTS, "generator.output")
    if not temperature > 0:
        raise ConfigError(f"generator.temperature must be > 0, got {temperature}")
    return nn.Tanh() if output == "tanh" else RelaxedBernoulli(temperature, output == "straight_through")


class LabelSlot:
    """The labels of the running G forward, shared by G's conditional batch norms."""

    y: Tensor | None = None


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose scale and shift are looked up per class (de Vries et al. 2017; Miyato &
    Koyama 2018; BigGAN): BN without affine, then gain[y] * h + bias[y], gains starting at 1 and
    biases at 0. The labels come from the generator's ``LabelSlot``."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, num_classes: int, slot: LabelSlot):
        super().__init__()
        c = bn.num_features
        self.bn = type(bn)(c, eps=bn.eps, momentum=bn.momentum, affine=False)
        self.gain, self.bias = nn.Embedding(num_classes, c), nn.Embedding(num_classes, c)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)
        self.slot = slot

    def forward(self, x: Tensor) -> Tensor:
        y = self.slot.y
        shape = [len(x), -1] + [1] * (x.dim() - 2)
        return self.bn(x) * self.gain(y).view(shape) + self.bias(y).view(shape)


class Generator(nn.Module):
    """``body`` maps the latent input (z, with the class label appended when conditional) to a
    sample. With ``cond: cbn`` the label enters through G's batch norms instead (subclasses
    build plain BatchNorm layers and call ``condition_norms()`` after initialising weights)."""

    def __init__(self, z_dim: int, num_classes: int = 0, embed_dim: int = 0, cond: str = "embed"):
        super().__init__()
        self.z_dim, self.num_classes, self.cond = z_dim, num_classes, choose(cond, G_COND, "generator.cond")
        self.embed = None
        if num_classes and cond == "embed":
            embed_dim = embed_dim or num_classes
            self.embed = nn.Embedding(num_classes, embed_dim)
        else:  # one-hot: as wide as the number of classes; cbn: nothing appended to z
            embed_dim = num_classes if cond == "onehot" else 0
        self.in_dim = z_dim + embed_dim
        self.body: nn.Module = nn.Identity()
        self.label_slot = LabelSlot()

    def condition_norms(self) -> None:
        """``cond: cbn``: every BatchNorm of ``body`` becomes a ``ConditionalBatchNorm``."""
        if not (self.num_classes and self.cond == "cbn"):
            return
        norms = [(parent, name, child) for parent in self.body.modules() for name, child in parent.named_children()
                 if isinstance(child, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            raise ConfigError("generator.cond=cbn conditions G's batch norms and this generator has none; "
                              "use generator.norm=batch (dcgan) or generator.batch_norm=true (mlp)")
        for parent, name, bn in norms:
            setattr(parent, name, ConditionalBatchNorm(bn, self.num_classes, self.label_slot))

    def latent_input(self, z: Tensor, y: Tensor | None) -> Tensor:
        if not self.num_classes:
            return z
        if y is None:
            raise ValueError("a conditional generator needs class labels y")
        if self.cond == "cbn":
            return z
        c = self.embed(y) if self.embed is not None else F.one_hot(y, self.num_classes).to(z.dtype)
        return torch.cat([z, c], dim=1)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.latent_input(z, y)
        self.label_slot.y = y
        try:
            return self.body(h)
        finally:
            self.label_slot.y = None


class Discriminator(nn.Module):
    """``body`` maps x (with the one-hot label appended when ``cond: concat``) to a flat feature
    vector; ``head`` to one logit. With ``cond: projection`` the term <embed(y), features> is
    added to the logit (Miyato & Koyama 2018). With ``cond: acgan`` the logit does not see y and
    ``classifier`` maps the features to class logits (Odena et al. 2017). ``in_extra`` is the input width the label adds,
    for subclasses building their first layer."""

    #: concat: the label as constant feature maps (convolutional D) or appended to the flat input (MLP)
    label_channels = False

    def __init__(self, feat_dim: int, num_classes: int = 0, cond: str = "projection"):
        super().__init__()
        self.num_classes, self.feat_dim, self.cond = num_classes, feat_dim, choose(cond, D_COND, "discriminator.cond")
        self.body: nn.Module = nn.Identity()
        self.head = nn.Linear(feat_dim, 1)
        self.embed = nn.Embedding(num_classes, feat_dim) if num_classes and cond == "projection" else None
        self.in_extra = num_classes if num_classes and cond == "concat" else 0
        self.classifier = nn.Linear(feat_dim, num_classes) if num_classes and cond == "acgan" else None

    def _check(self, y: Tensor | None) -> None:
        if self.num_classes and y is None:
            raise ValueError("a conditional discriminator needs class labels y")

    def label_input(self, x: Tensor, y: Tensor | None) -> Tensor:
        """x with onehot(y) concatenated (``cond: concat``); x itself otherwise."""
        if not self.in_extra:
            return x
        self._check(y)
        c = F.one_hot(y, self.num_classes).to(x.dtype)
        if self.label_channels:
            return torch.cat([x, c[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)
        return torch.cat([x.flatten(1), c], dim=1)

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The input of the head; depends on y only with ``cond: concat``."""
        return self.body(self.label_input(x, y)).flatten(1)

    def required_hooks(self) -> list:
        """The hooks this D trains through: with a class head (``cond: acgan``), AC-GAN's class
        terms (``tricks=[acgan]`` configures them instead when listed)."""
        if self.classifier is None:
            return []
        from ganexp.models.acgan import ACGAN

        return [ACGAN()]

    def classify(self, x: Tensor) -> Tensor:
        """``cond: acgan``: the auxiliary classifier's class logits (a forward of ``features``)."""
        if self.classifier is None:
            raise ValueError("classify needs a discriminator built with cond=acgan and conditional=true")
        return self.classifier(self.features(x))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        self._check(y)
        f = self.features(x, y)
        out = self.head(f).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * f).sum(dim=1)
        return out


class Maxout(nn.Module):
    """A maxout layer (Goodfellow et al. 2013): ``pieces`` linear maps, the largest taken per unit,
    h_i = max_j (W_j x + b_j)_i. PacGAN's and VEEGAN's 2D discriminators use 5 pieces."""

    def __init__(self, in_features: int, out_features: int, pieces: int = 5):
        super().__init__()
        if pieces < 1:
            raise ConfigError(f"maxout needs pieces >= 1, got {pieces}")
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).view(*x.shape[:-1], self.out_features, self.pieces).amax(-1)


#: Activations that are layers of their own (they replace the linear map): an MLP option only.
LAYER_ACTIVATIONS = ("maxout",)


def activation(name: str) -> nn.Module:
    table = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh, "elu": nn.ELU}
    if name in LAYER_ACTIVATIONS:
        raise ConfigError(f"activation '{name}' is a layer of the mlp model (model=mlp *.act={name}), not of this model")
    if name not in table:
        raise ConfigError(f"unknown activation '{name}'; choose one of {sorted(table) + list(LAYER_ACTIVATIONS)}")
    return table[name]()
