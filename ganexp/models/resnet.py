"""Residual GAN models of the SNGAN/BigGAN family (Miyato et al. 2018, App. B.4; Miyato &
Koyama 2018; Brock et al. 2019, App. B).

G: a linear map of z to a base x base x ch map, up-blocks (BN-ReLU-up-conv3-BN-ReLU-conv3, a
1x1-conv shortcut on the upsampled input) to the dataset's resolution, then BN-ReLU-conv3-tanh.
D: an optimised first block (conv3-ReLU-conv3-pool, shortcut pool-conv1), residual down-blocks
(ReLU-conv3-ReLU-conv3-pool, shortcut conv1-pool) and plain blocks, then ReLU, a sum over the
spatial positions and a linear head (+ the projection term <embed(y), h> when conditional).

Depth follows the resolution (written base * 2**k as for dcgan): up to 32 px (CIFAR-10, the
28 px digits) G has k up-blocks of constant width ``ch`` and D two down-blocks and two plain
ones (SNGAN's 32 px networks); above 32 px (64, 128) each G block after the first halves the
width and D has k down-blocks widening up to ``ch`` plus one plain block (BigGAN's 64/128/256 px
networks, ``G_ARCH``/``D_ARCH``, whose ``ch`` is 16 times BigGAN's ``ch`` argument).

Conditional G: batch norms with per-class gains and shifts (SNGAN-projection); with
``shared_embedding`` or ``hierarchical`` (BigGAN) the gains and shifts are linear maps of a
vector per block: the shared class embedding, a chunk of z, or both concatenated.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ganexp.errors import ConfigError
from ganexp.models.attention import SelfAttention, check_attention
from ganexp.models.base import ConditionalBatchNorm, Discriminator, Generator, choose, output_layer
from ganexp.models.dcgan import stages

INITS = ("xavier", "ortho", "default")
SN_LAYERS = (nn.Conv2d, nn.Linear, nn.Embedding)


def _init(module: nn.Module, init: str) -> None:
    """``xavier``: Glorot-uniform, gain sqrt(2) in the residual paths and 1 elsewhere (SNGAN's
    code); ``ortho``: orthogonal (BigGAN); ``default``: PyTorch's. Biases start at 0; the
    per-class gain/shift tables keep their start (1 and 0)."""
    if choose(init, INITS, "init") == "default":
        return
    norms = {id(t) for m in module.modules() if isinstance(m, ConditionalBatchNorm) for t in (m.gain, m.bias)}
    for name, m in module.named_modules():
        if isinstance(m, SN_LAYERS) and id(m) not in norms:
            init_layer(m, name, init)


def init_layer(m: nn.Module, name: str, init: str) -> None:
    """One layer's init (see ``_init``); ``name`` picks the residual paths' gain."""
    if init == "default":
        return
    gain = math.sqrt(2) if name.rsplit(".", 1)[-1] in ("c1", "c2") else 1.0
    if init == "xavier":
        nn.init.xavier_uniform_(m.weight, gain)
    else:
        nn.init.orthogonal_(m.weight)
    if getattr(m, "bias", None) is not None:
        nn.init.zeros_(m.bias)


def _spectral_norm_all(module: nn.Module, skip: tuple[nn.Module, ...] = ()) -> None:
    """Spectral norm (Miyato et al. 2018) on every convolution, linear and embedding layer but
    ``skip`` (lookup tables that are not layers: per-class gains, BigGAN's shared embedding)."""
    skipped = {id(m) for m in skip}
    for m in list(module.modules()):
        if isinstance(m, SN_LAYERS) and id(m) not in skipped and not parametrize.is_parametrized(m, "weight"):
            spectral_norm(m)


class VectorBatchNorm(nn.Module):
    """BigGAN's conditional batch norm (Brock et al. 2019, Sec. 3 and App. B): BN without affine,
    then (1 + W_g c) * h + W_b c, with c the block's conditioning vector (shared class embedding
    and/or latent chunk). W_g and W_b are initialised like G's other linear layers (BigGAN), not
    at 0: under spectral norm a zero matrix has no direction to normalise."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain, self.bias = nn.Linear(cond_dim, channels, bias=False), nn.Linear(cond_dim, channels, bias=False)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        return self.bn(x) * (1 + self.gain(c))[:, :, None, None] + self.bias(c)[:, :, None, None]


class GBlock(nn.Module):
    """SNGAN's up-block: x -> BN-ReLU-up2-conv3-BN-ReLU-conv3, plus up2-conv1(x)."""

    def __init__(self, cin: int, cout: int, norm):
        super().__init__()
        self.b1, self.b2 = norm(cin), norm(cout)
        self.act1, self.act2 = nn.ReLU(), nn.ReLU()  # modules, so G's layer tricks (noise, dropout) find them
        self.c1, self.c2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.c_sc = nn.Conv2d(cin, cout, 1)

    @staticmethod
    def _norm(bn: nn.Module, x: Tensor, c: Tensor | None) -> Tensor:
        return bn(x, c) if isinstance(bn, VectorBatchNorm) else bn(x)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        h = F.interpolate(self.act1(self._norm(self.b1, x, c)), scale_factor=2)
        h = self.c2(self.act2(self._norm(self.b2, self.c1(h), c)))
        return h + self.c_sc(F.interpolate(x, scale_factor=2))


class DBlock(nn.Module):
    """SNGAN's D block: ReLU-conv3-ReLU-conv3[-pool] plus conv1[-pool](x) (identity when shapes
    agree). ``first``: the optimised block on the image, conv3-ReLU-conv3-pool plus pool-conv1(x),
    with no ReLU on the input."""

    def __init__(self, cin: int, cout: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.c1, self.c2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.c_sc = nn.Conv2d(cin, cout, 1) if (cin != cout or down or first) else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.c2(F.relu(self.c1(x if self.first else F.relu(x))))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.c_sc is None:
            return h + x
        if self.first:  # pool, then conv: cheaper on the image, as in SNGAN's optimised block
            return h + self.c_sc(F.avg_pool2d(x, 2))
        sc = self.c_sc(x)
        return h + (F.avg_pool2d(sc, 2) if self.down else sc)


class SumPool(nn.Module):
    """Global sum pooling: ReLU, then the sum over spatial positions (SNGAN's D)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x).sum(dim=(2, 3))


#: BigGAN's block widths above 32 px, in units of ch / 16 (its reference code's ``G_arch``/``D_arch``;
#: ganexp's ``ch`` is 16 times BigGAN's): G's first input width then each up-block's output, and
#: each D block's output (the last block keeps the resolution).
G_ARCH = {64: [16, 16, 8, 4, 2], 128: [16, 16, 8, 4, 2, 1], 256: [16, 16, 8, 8, 4, 2, 1]}
D_ARCH = {64: [1, 2, 4, 8, 16], 128: [1, 2, 4, 8, 16, 16], 256: [1, 2, 4, 8, 8, 16, 16]}


def g_widths(resolution: int, ch: int) -> list[int]:
    """G's first width, then each up-block's output width."""
    _, k, large = _layout(resolution)
    if resolution in G_ARCH:
        return [max(1, ch * m // 16) for m in G_ARCH[resolution]]
    return [ch] + [max(1, ch >> i) if large else ch for i in range(k)]


def d_widths(resolution: int, ch: int) -> list[int]:
    """Each D block's output width: SNGAN's constant ``ch`` up to 32 px, BigGAN's widening above."""
    _, k, large = _layout(resolution)
    if resolution in D_ARCH:
        return [max(1, ch * m // 16) for m in D_ARCH[resolution]]
    n = k + 1 if large else 4
    return [max(1, ch >> (n - 1 - i)) if large else ch for i in range(n)]


def _layout(resolution: int) -> tuple[int, int, bool]:
    """(base, k, large): resolution = base * 2**k; ``large`` above 32 px (BigGAN's 64/128 px layout)."""
    try:
        base, k = stages(resolution)
    except ConfigError:
        raise ConfigError(f"resnet needs a resolution of 4..7 times a power of two (16, 28, 32, 64, 128, ...), "
                          f"got {resolution}") from None
    return base, k, resolution > 32


class ResNetGenerator(Generator):
    def __init__(self, channels: int, resolution: int, z_dim: int = 128, ch: int = 256, num_classes: int = 0,
                 shared_embedding: int = 0, hierarchical: bool = False, spectral_norm: bool = False,
                 attention: int = 0, init: str = "xavier", output: str = "tanh", temperature: float = 0.5):
        super().__init__(z_dim, num_classes, 0, "cbn")  # the label enters through the batch norms only
        base, k, large = _layout(resolution)
        if shared_embedding and not num_classes:
            raise ConfigError("generator.shared_embedding needs conditional=true (it embeds the class label)")
        if shared_embedding < 0:
            raise ConfigError(f"generator.shared_embedding must be >= 0, got {shared_embedding}")
        if hierarchical and z_dim < k + 1:
            raise ConfigError(f"generator.hierarchical splits z over {k + 1} parts and latent.dim={z_dim} is smaller")
        widths = g_widths(resolution, ch)
        sizes = [base * 2 ** (i + 1) for i in range(k)]  # after each block
        check_attention(attention, sizes, "generator", resolution, "resnet")
        self.base, self.hierarchical = base, hierarchical
        self.splits = [len(c) for c in torch.arange(z_dim).tensor_split(k + 1)] if hierarchical else [z_dim]
        self.shared = nn.Embedding(num_classes, shared_embedding) if shared_embedding else None
        class_dim = (shared_embedding or num_classes) if num_classes else 0
        self.vector_cbn = hierarchical or bool(shared_embedding)
        cond_dim = class_dim + (self.splits[1] if hierarchical else 0)  # tensor_split: later chunks are not larger

        def norm(c: int) -> nn.Module:
            if self.vector_cbn:
                return VectorBatchNorm(c, cond_dim)
            if num_classes:
                return ConditionalBatchNorm(nn.BatchNorm2d(c), num_classes, self.label_slot)
            return nn.BatchNorm2d(c)

        self.linear = nn.Linear(self.splits[0], widths[0] * base * base)
        self.blocks = nn.ModuleList(GBlock(cin, cout, norm) for cin, cout in zip(widths[:-1], widths[1:]))
        self.attn = nn.ModuleDict({str(i): SelfAttention(widths[i + 1]) for i, s in enumerate(sizes) if s == attention})
        self.out = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(), nn.Conv2d(widths[-1], channels, 3, 1, 1),
                                 output_layer(output, temperature))
        self.cond_dim = cond_dim
        _init(self, init)
        if spectral_norm:
            tables = [t for m in self.modules() if isinstance(m, ConditionalBatchNorm) for t in (m.gain, m.bias)]
            _spectral_norm_all(self, tuple(tables) + ((self.shared,) if self.shared is not None else ()))

    def _vectors(self, z: Tensor, y: Tensor | None) -> tuple[Tensor, list[Tensor | None]]:
        """z's first chunk and the conditioning vector of each block (None: none needed)."""
        chunks = list(z.split(self.splits, dim=1))
        n = len(self.blocks)
        if not self.vector_cbn:
            return chunks[0], [None] * n
        cls = None
        if self.num_classes:
            cls = self.shared(y) if self.shared is not None else F.one_hot(y, self.num_classes).to(z.dtype)
        out = []
        for i in range(n):
            parts = [p for p in (cls, chunks[i + 1] if self.hierarchical else None) if p is not None]
            c = torch.cat(parts, dim=1)
            if c.shape[1] < self.cond_dim:  # an uneven split: pad the shorter chunk
                c = F.pad(c, (0, self.cond_dim - c.shape[1]))
            out.append(c)
        return chunks[0], out

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes and y is None:
            raise ValueError("a conditional generator needs class labels y")
        z0, cs = self._vectors(z, y)
        self.label_slot.y = y
        try:
            h = self.linear(z0).view(len(z), -1, self.base, self.base)
            for i, (block, c) in enumerate(zip(self.blocks, cs)):
                h = block(h, c)
                if str(i) in self.attn:
                    h = self.attn[str(i)](h)
            return self.out(h)
        finally:
            self.label_slot.y = None


class ResNetDiscriminator(Discriminator):
    label_channels = True  # cond: concat adds the one-hot label as constant input channels

    def __init__(self, channels: int, resolution: int, ch: int = 128, num_classes: int = 0, cond: str = "projection",
                 spectral_norm: bool = True, attention: int = 0, init: str = "xavier"):
        base, k, large = _layout(resolution)
        downs = [True] * k + [False] if large else [True, True, False, False]
        widths = d_widths(resolution, ch)
        sizes, s = [], resolution
        for d in downs:
            s = s // 2 if d else s
            sizes.append(s)
        check_attention(attention, sorted(set(sizes)), "discriminator", resolution, "resnet")
        super().__init__(widths[-1], num_classes, cond)
        layers: list[nn.Module] = []
        placed = False
        for i, (cin, cout, down, size) in enumerate(zip([channels + self.in_extra, *widths[:-1]], widths, downs, sizes)):
            layers.append(DBlock(cin, cout, down, first=i == 0))
            if attention == size and not placed:  # after the first block that reaches that size
                layers.append(SelfAttention(cout))
                placed = True
        self.body = nn.Sequential(*layers, SumPool())
        self.init = init
        _init(self, init)
        if spectral_norm:
            _spectral_norm_all(self)

    def init_layer(self, name: str, layer: nn.Module) -> None:
        """This model's own init for a layer a trick rebuilt (pacgan widens the input layers)."""
        init_layer(layer, name, self.init)

    def input_layers(self) -> list[tuple[nn.Module, str, nn.Module]]:
        """(parent, name, layer) of the layers that read the image: the first block's conv and its
        shortcut (tricks that widen D's input, e.g. pacgan, change both)."""
        first = self.body[0]
        return [(first, "c1", first.c1), (first, "c_sc", first.c_sc)]
