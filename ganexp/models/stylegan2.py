"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"), laid out as
NVlabs/stylegan2-ada-pytorch's ``training/networks.py`` (G: 'skip', D: 'resnet').

G: a mapping network (``mapping_layers`` lrelu FC layers, lr multiplier 0.01; conditional: the label's
embedding, normalised, concatenated to the normalised z, as StyleGAN2-ADA) maps z to w, whose running
mean ``w_avg`` is kept for truncation. The synthesis network starts from a learned constant at the
base size (4..7) and doubles: per resolution a modulated, demodulated 3x3 conv (with x2 upsampling),
another, per-pixel noise with learned strengths, and a toRGB whose image is added to the upsampled
image so far (the skip architecture). Each layer reads its own copy of w; in training, with
probability ``mixing`` (0.9) the copies from a random cut on come from a second latent (style mixing).
D: fromRGB, residual blocks (conv3, conv3 + x0.5, a 1x1 shortcut, both times sqrt(0.5)), then the
epilogue at the base size: the minibatch-stddev channel (groups of ``mbstd_group``), conv3, FC, and the
head (+ the projection <embed(y), features> when conditional, Miyato & Koyama 2018). Every weight has an
equalised lr. Widths: min(channel_base / res, channel_max), res counted as 4, 8, 16, ... from the base.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ganexp.errors import ConfigError
from ganexp.models.base import Discriminator, Generator
from ganexp.models.dcgan import stages
from ganexp.models.style_layers import EqualConv2d, EqualLinear, MappingNetwork, SynthesisLayer, ToRGB, upsample2
from ganexp.tricks.architecture import stddev_group


def _layout(resolution: int, channel_base: int, channel_max: int) -> tuple[int, int, list[int]]:
    """(base, k, widths): resolution = base * 2**k; widths[i] at base * 2**i."""
    try:
        base, k = stages(resolution)
    except ConfigError:
        raise ConfigError(f"stylegan2 needs a power of two from 16 up or 28 (4..7 times a power of two), got {resolution}") from None
    if channel_base < 1 or channel_max < 1:
        raise ConfigError(f"stylegan2 channel_base and channel_max must be >= 1, got {channel_base}, {channel_max}")
    return base, k, [max(1, min(channel_base // (4 * 2 ** i), channel_max)) for i in range(k + 1)]


class StyleGAN2Generator(Generator):
    def __init__(self, channels: int, resolution: int, z_dim: int = 512, w_dim: int = 512, mapping_layers: int = 8,
                 channel_base: int = 16384, channel_max: int = 512, num_classes: int = 0, mixing: float = 0.9,
                 lr_mul: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__(z_dim, 0, 0, "embed")  # the label enters through the mapping network
        if not 0 <= mixing <= 1:
            raise ConfigError(f"generator.mixing must be in [0, 1], got {mixing}")
        if mapping_layers < 1 or w_dim < 1:
            raise ConfigError(f"generator.mapping_layers and w_dim must be >= 1, got {mapping_layers}, {w_dim}")
        base, k, widths = _layout(resolution, channel_base, channel_max)
        self.num_classes, self.mixing, self.base = num_classes, mixing, base
        self.num_ws = 2 * k + 2
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers, num_classes, lr_mul, w_avg_beta)
        self.const = nn.Parameter(torch.randn(widths[0], base, base))
        self.convs = nn.ModuleList([SynthesisLayer(widths[0], widths[0], w_dim)])
        self.torgb = nn.ModuleList([ToRGB(widths[0], channels, w_dim)])
        for cin, cout in zip(widths[:-1], widths[1:]):
            self.convs.extend([SynthesisLayer(cin, cout, w_dim, up=True), SynthesisLayer(cout, cout, w_dim)])
            self.torgb.append(ToRGB(cout, channels, w_dim))

    def mix(self, ws: Tensor, y: Tensor | None) -> Tensor:
        """Style mixing: with probability ``mixing`` the ws from a random cut in 1..num_ws-1 on come
        from a fresh latent (one cut per batch, as the reference; no host sync)."""
        if not (self.training and self.mixing > 0):
            return ws
        n = self.num_ws
        cut = torch.randint(1, n, (), device=ws.device)
        cut = torch.where(torch.rand((), device=ws.device) < self.mixing, cut, torch.full_like(cut, n))
        z2 = torch.randn(ws.shape[0], self.z_dim, device=ws.device, dtype=ws.dtype)
        ws2 = self.mapping(z2, y, update_avg=False)
        late = (torch.arange(n, device=ws.device) >= cut)[None, :, None]
        return torch.where(late, ws2, ws)

    def ws(self, z: Tensor, y: Tensor | None = None, psi: float = 1.0) -> Tensor:
        """The per-layer styles (B, num_ws, w_dim) G's forward uses: mapping, truncation, mixing."""
        if self.num_classes and y is None:
            raise ValueError("a conditional generator needs class labels y")
        return self.mix(self.mapping(z, y, psi), y)

    def synthesis(self, ws: Tensor) -> Tensor:
        x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        x = self.convs[0](x, ws[:, 0])
        img = self.torgb[0](x, ws[:, 1])
        for i, rgb in enumerate(self.torgb[1:]):
            j = 1 + 2 * i
            x = self.convs[j + 1](self.convs[j](x, ws[:, j]), ws[:, j + 1])
            img = upsample2(img) + rgb(x, ws[:, j + 2])
        return img

    def forward(self, z: Tensor, y: Tensor | None = None, psi: float = 1.0) -> Tensor:
        return self.synthesis(self.ws(z, y, psi))


class DBlock(nn.Module):
    """conv3-lrelu, conv3-lrelu-x0.5, plus (``residual``) a 1x1 shortcut of the x0.5 input, both paths
    times sqrt(0.5); without it the reference's 'orig' block (its CIFAR-10 configuration)."""

    def __init__(self, cin: int, cout: int, residual: bool = True):
        super().__init__()
        gain = math.sqrt(0.5) if residual else 1.0
        self.conv0 = EqualConv2d(cin, cin, 3)
        self.conv1 = EqualConv2d(cin, cout, 3, down=True, gain=gain)
        self.skip = EqualConv2d(cin, cout, 1, bias=False, act=False, down=True, gain=gain) if residual else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(self.conv0(x))
        return h if self.skip is None else self.skip(x) + h


class MinibatchStddevMap(nn.Module):
    """ProGAN's minibatch stddev as StyleGAN2 places it: per group of ``group_size`` samples (sample i
    in group i % (n / g)), the std over the group averaged over channels and pixels, appended as
    ``num_channels`` constant maps (groups that do not divide the batch: ``stddev_group``)."""

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g, f = stddev_group(self.group_size, n), self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean(dim=(2, 3, 4))  # (n / g, f)
        return torch.cat([x, y.repeat(g, 1)[:, :, None, None].expand(-1, -1, h, w)], dim=1)


class Epilogue(nn.Module):
    def __init__(self, ch: int, base: int, mbstd_group: int, mbstd_channels: int):
        super().__init__()
        self.mbstd = MinibatchStddevMap(mbstd_group, mbstd_channels) if mbstd_channels else nn.Identity()
        self.conv = EqualConv2d(ch + mbstd_channels, ch, 3)
        self.fc = EqualLinear(ch * base * base, ch, act=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(self.mbstd(x)).flatten(1))


class StyleGAN2Discriminator(Discriminator):
    label_channels = True  # cond: concat adds the one-hot label as constant input channels

    def __init__(self, channels: int, resolution: int, channel_base: int = 16384, channel_max: int = 512,
                 num_classes: int = 0, cond: str = "projection", mbstd_group: int = 4, mbstd_channels: int = 1,
                 residual: bool = True):
        base, k, widths = _layout(resolution, channel_base, channel_max)
        if mbstd_channels < 0 or (mbstd_channels and widths[0] % mbstd_channels):
            raise ConfigError(f"discriminator.mbstd_channels must divide the last width {widths[0]}, got {mbstd_channels}")
        if mbstd_group < 1:
            raise ConfigError(f"discriminator.mbstd_group must be >= 1, got {mbstd_group}")
        super().__init__(widths[0], num_classes, cond)
        fromrgb = EqualConv2d(channels + self.in_extra, widths[k], 1)
        blocks = [DBlock(widths[i], widths[i - 1], residual) for i in range(k, 0, -1)]
        self.body = nn.Sequential(fromrgb, *blocks, Epilogue(widths[0], base, mbstd_group, mbstd_channels))
        self.head = EqualLinear(widths[0], 1)

    def input_layers(self) -> list[tuple[nn.Module, str, nn.Module]]:
        """(parent, name, layer) of the layer that reads the image (PacGAN widens it)."""
        return [(self.body, "0", self.body[0])]

