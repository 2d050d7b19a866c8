"""StyleGAN2's layers (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN";
NVlabs/stylegan2-ada-pytorch ``training/networks.py``), in plain torch.

Equalised learning rate (Karras et al. 2018, ProGAN, Sec. 4.1): weights are stored N(0, 1) (divided by
the layer's lr multiplier) and scaled at run time by lr_mul / sqrt(fan_in), so Adam's per-parameter
steps move every layer at the same relative speed; an lr multiplier (the mapping network's 0.01)
slows a layer by that factor. Modulated convolution (Sec. 2.2, Eq. 1-3): the input channels are
scaled by the style s, the output divided by sqrt(sum (w s)^2 + eps) (demodulation), computed as
x * s -> conv -> * d (the reference's non-fused path), so a plain convolution does the work.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_GAIN = math.sqrt(2)


def lrelu(x: Tensor, gain: float = LRELU_GAIN) -> Tensor:
    """The reference's bias_act 'lrelu': leaky ReLU (slope 0.2) times sqrt(2)."""
    return F.leaky_relu(x, 0.2) * gain


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def upsample2(x: Tensor) -> Tensor:
    """x2 bilinear upsampling: the reference's [1, 3, 3, 1] FIR upsampling filter (edges replicated)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class EqualLinear(nn.Module):
    """y = x (W * lr_mul / sqrt(in))^T + b * lr_mul, W stored N(0, 1 / lr_mul^2), b stored bias_init / lr_mul."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, act: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.weight_gain, self.lr_mul, self.act = lr_mul / math.sqrt(in_features), lr_mul, act
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        b = self.bias * self.lr_mul if self.bias is not None else None
        x = F.linear(x, self.weight * self.weight_gain, b)
        return lrelu(x) if self.act else x

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, lr_mul={self.lr_mul}, act={self.act}"


class EqualConv2d(nn.Module):
    """A k x k convolution with equalised lr, optional lrelu and x0.5 downsampling after it (2x2
    average pooling: the reference blurs with [1, 3, 3, 1] and strides). ``gain`` scales the output
    (the residual D's sqrt(0.5))."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True, act: bool = True, down: bool = False,
                 gain: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.weight_gain = 1 / math.sqrt(cin * kernel * kernel)
        self.in_channels, self.out_channels, self.kernel = cin, cout, kernel
        self.act, self.down, self.gain = act, down, gain

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.kernel // 2)
        if self.down:
            x = F.avg_pool2d(x, 2)
        return (lrelu(x, LRELU_GAIN * self.gain) if self.act else x * self.gain)

    def widened(self, m: int) -> "EqualConv2d":
        """The same layer reading m times the input channels (PacGAN), freshly initialised."""
        new = EqualConv2d(self.in_channels * m, self.out_channels, self.kernel, self.bias is not None, self.act,
                          self.down, self.gain)
        return new.to(self.weight.device)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, k={self.kernel}, act={self.act}, down={self.down}"


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True, up: bool = False) -> Tensor:
    """Conv of x (B, I, H, W) with weight (O, I, k, k) modulated per sample by styles (B, I) (Eq. 1);
    with ``demodulate`` each output channel is divided by sqrt(sum_{i,k} (w s)^2 + 1e-8) (Eq. 3)."""
    x = x * styles[:, :, None, None]
    if up:
        x = upsample2(x)
    x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    if demodulate:
        d = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()  # (B, O)
        x = x * d[:, :, None, None]
    return x


class MappingNetwork(nn.Module):
    """z (normalised) [+ embed(onehot y), normalised] -> ``layers`` lrelu FC layers with lr multiplier
    ``lr_mul`` -> w, broadcast to ``num_ws`` copies. ``w_avg`` tracks E[w] while training (decay
    ``w_avg_beta``, 0.995) for truncation: w' = w_avg + psi (w - w_avg)."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, layers: int = 8, num_classes: int = 0,
                 lr_mul: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_classes, self.w_avg_beta = z_dim, w_dim, num_ws, num_classes, w_avg_beta
        self.embed = EqualLinear(num_classes, w_dim) if num_classes else None
        widths = [z_dim + (w_dim if num_classes else 0)] + [w_dim] * layers
        self.fc = nn.ModuleList(EqualLinear(a, b, lr_mul=lr_mul, act=True) for a, b in zip(widths[:-1], widths[1:]))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor, y: Tensor | None = None, psi: float = 1.0, update_avg: bool = True) -> Tensor:
        x = normalize_2nd_moment(z)
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional generator needs class labels y")
            c = F.one_hot(y, self.num_classes).to(z.dtype)
            x = torch.cat([x, normalize_2nd_moment(self.embed(c))], dim=1)
        for layer in self.fc:
            x = layer(x)
        if update_avg and self.training:
            self.w_avg.copy_(x.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        if psi != 1:
            x = self.w_avg.to(x.dtype).lerp(x, psi)
        return x.unsqueeze(1).repeat(1, self.num_ws, 1)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (demodulated) [x2 up first], per-pixel noise times a learned strength
    (0 at start), bias, lrelu. The style affine A starts with bias 1 (styles near 1)."""

    def __init__(self, cin: int, cout: int, w_dim: int, up: bool = False):
        super().__init__()
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.up = up

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = modulated_conv2d(x, self.weight, self.affine(w), demodulate=True, up=self.up)
        noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        x = x + noise * self.noise_strength
        return lrelu(x + self.bias[:, None, None])


class ToRGB(nn.Module):
    """Modulated 1x1 conv to the image channels, without demodulation, plus a bias (linear)."""

    def __init__(self, cin: int, channels: int, w_dim: int):
        super().__init__()
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(channels, cin, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.weight_gain = 1 / math.sqrt(cin)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False)
        return x + self.bias[:, None, None]
