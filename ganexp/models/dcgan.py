"""DCGAN (Radford et al. 2016): strided (transposed) convolutions, BatchNorm, ReLU in G,
LeakyReLU(0.2) in D, tanh output (or a relaxed Bernoulli for binary images), N(0, 0.02) init.

The number of up/down-sampling stages follows the dataset's resolution: it starts from a
4x4 .. 7x7 base and doubles, so 16, 28, 32 and 64 (and 128, ...) all work.
Up-sampling may be transposed conv, PixelShuffle or nearest+conv, and down-sampling
strided conv or conv+average pool (the ganhacks alternatives). ``attention`` puts a SAGAN
self-attention block (Zhang et al. 2019) after the stage whose feature map has that size.
"""
from __future__ import annotations

from torch import nn

from ganexp.errors import ConfigError
from ganexp.models.attention import SelfAttention, check_attention
from ganexp.models.base import Discriminator, Generator, dcgan_init_, output_layer


def stages(resolution: int) -> tuple[int, int]:
    """(base, k) with resolution = base * 2**k and 4 <= base <= 7."""
    k = 0
    while resolution % 2 == 0 and resolution // 2 >= 4:
        resolution //= 2
        k += 1
    if not (4 <= resolution <= 7) or k < 1:
        raise ConfigError(f"dcgan needs a resolution of 4..7 times a power of two (16, 28, 32, 64, ...), got {resolution * 2**k}")
    return resolution, k


def up(cin: int, cout: int, mode: str, bias: bool) -> list[nn.Module]:
    if mode == "convt":
        return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias)]
    if mode == "pixelshuffle":
        return [nn.Conv2d(cin, 4 * cout, 3, 1, 1, bias=bias), nn.PixelShuffle(2)]
    if mode == "nearest":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1, bias=bias)]
    raise ConfigError(f"unknown upsample '{mode}'; choose one of convt, pixelshuffle, nearest")


def down(cin: int, cout: int, mode: str, bias: bool) -> list[nn.Module]:
    if mode == "strided":
        return [nn.Conv2d(cin, cout, 4, 2, 1, bias=bias)]
    if mode == "avgpool":
        return [nn.Conv2d(cin, cout, 3, 1, 1, bias=bias), nn.AvgPool2d(2)]
    raise ConfigError(f"unknown downsample '{mode}'; choose one of strided, avgpool")


def norm2d(kind: str, c: int) -> list[nn.Module]:
    table = {"batch": lambda: [nn.BatchNorm2d(c)], "layer": lambda: [nn.GroupNorm(1, c)],
             "instance": lambda: [nn.InstanceNorm2d(c, affine=True)], "none": lambda: []}
    if kind not in table:
        raise ConfigError(f"unknown norm '{kind}'; choose one of {sorted(table)}")
    return table[kind]()


class DCGANGenerator(Generator):
    def __init__(self, channels: int, resolution: int, z_dim: int = 100, ngf: int = 64, upsample: str = "convt",
                 norm: str = "batch", num_classes: int = 0, embed_dim: int = 0, cond: str = "embed",
                 output: str = "tanh", temperature: float = 0.5, attention: int = 0):
        super().__init__(z_dim, num_classes, embed_dim, cond)
        base, k = stages(resolution)
        widths = [ngf * 2 ** (k - 1 - i) for i in range(k)]
        sizes = [base * 2 ** i for i in range(k)]  # of the hidden feature maps
        check_attention(attention, sizes, "generator", resolution)
        layers: list[nn.Module] = [nn.Unflatten(1, (self.in_dim, 1, 1)),
                                   nn.ConvTranspose2d(self.in_dim, widths[0], base, 1, 0, bias=False),
                                   *norm2d(norm, widths[0]), nn.ReLU(True)]
        layers += [SelfAttention(widths[0])] if attention == sizes[0] else []
        for cin, cout, size in zip(widths[:-1], widths[1:], sizes[1:]):
            layers += [*up(cin, cout, upsample, bias=False), *norm2d(norm, cout), nn.ReLU(True)]
            layers += [SelfAttention(cout)] if attention == size else []
        layers += [*up(widths[-1], channels, upsample, bias=True), output_layer(output, temperature)]
        self.body = nn.Sequential(*layers)
        dcgan_init_(self)
        self.condition_norms()


class DCGANDiscriminator(Discriminator):
    label_channels = True  # cond: concat adds the one-hot label as constant input channels

    def __init__(self, channels: int, resolution: int, ndf: int = 64, downsample: str = "strided",
                 norm: str = "batch", num_classes: int = 0, cond: str = "projection", attention: int = 0):
        base, k = stages(resolution)
        widths = [ndf * 2 ** i for i in range(k)]
        sizes = [resolution // 2 ** (i + 1) for i in range(k)]  # of the feature maps after each stage
        check_attention(attention, sizes, "discriminator", resolution)
        super().__init__(widths[-1] * base * base, num_classes, cond)
        layers: list[nn.Module] = [*down(channels + self.in_extra, widths[0], downsample, bias=True), nn.LeakyReLU(0.2, True)]
        layers += [SelfAttention(widths[0])] if attention == sizes[0] else []
        for cin, cout, size in zip(widths[:-1], widths[1:], sizes[1:]):
            layers += [*down(cin, cout, downsample, bias=norm == "none"), *norm2d(norm, cout), nn.LeakyReLU(0.2, True)]
            layers += [SelfAttention(cout)] if attention == size else []
        self.body = nn.Sequential(*layers)
        dcgan_init_(self)
