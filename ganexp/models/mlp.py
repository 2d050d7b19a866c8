"""Fully connected GAN (Goodfellow et al. 2014): for 2D data and flattened images.

The notes' digit GAN is G 100-300-784 and D 784-300-100-1 with LeakyReLU(0.2); those are
the defaults. G ends in tanh for images (data in [-1, 1]), or in a relaxed Bernoulli for
binary images (``output: relaxed_bernoulli``), and is linear for points.

``act: maxout`` makes every hidden layer a maxout layer of ``pieces`` linear maps (Goodfellow et
al. 2013), as in PacGAN's and VEEGAN's 2D discriminator. ``init``: ``auto`` is N(0, 0.02) for
images (DCGAN) and PyTorch's default for points; ``normal`` is N(0, 0.02) always (PacGAN's code);
``orthogonal`` is orthogonal weights with gain ``init_gain`` and zero biases (the unrolled GAN's 2D
nets, Metz et al. 2017, App. A: gain 0.8); ``default`` is PyTorch's always. D's ``input_scale``
multiplies its input first (the unrolled GAN's D scales the ring by 1/4, "to roughly (-1, 1)").
"""
from __future__ import annotations

import math

from torch import Tensor, nn

from ganexp.errors import ConfigError
from ganexp.models.base import Discriminator, Generator, Maxout, activation, choose, dcgan_init_, output_layer

INITS = ("auto", "normal", "orthogonal", "default")


def _stack(sizes: list[int], act: str, norm: bool = False, pieces: int = 5) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        if act == "maxout":
            layers += [Maxout(i, o, pieces)] + ([nn.BatchNorm1d(o)] if norm else [])
        else:
            layers += [nn.Linear(i, o)] + ([nn.BatchNorm1d(o)] if norm else []) + [activation(act)]
    return layers


def _init(module: nn.Module, init: str, is_image: bool, gain: float = 1.0) -> None:
    if choose(init, INITS, "init") == "normal" or (init == "auto" and is_image):
        dcgan_init_(module)
    elif init == "orthogonal":
        for m in module.modules():
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight, gain)
                nn.init.zeros_(m.bias)


class Scale(nn.Module):
    """x times a constant (no parameters)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class MLPGenerator(Generator):
    def __init__(self, shape: tuple[int, ...], is_image: bool, z_dim: int = 100, hidden: list[int] = (300,),
                 act: str = "leaky_relu", batch_norm: bool = False, num_classes: int = 0, embed_dim: int = 0,
                 cond: str = "embed", output: str = "tanh", temperature: float = 0.5, pieces: int = 5,
                 init: str = "auto", init_gain: float = 1.0):
        super().__init__(z_dim, num_classes, embed_dim, cond)
        self.shape = tuple(shape)
        sizes = [self.in_dim, *hidden]
        last = output_layer(output, temperature)
        if not is_image and output != "tanh":
            raise ConfigError(f"generator.output={output} makes binary images and this dataset is points; use generator.output=tanh")
        out = [nn.Linear(sizes[-1], math.prod(self.shape))] + ([last] if is_image else [])
        self.body = nn.Sequential(*_stack(sizes, act, batch_norm, pieces), *out)
        _init(self, init, is_image, init_gain)
        self.condition_norms()

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return super().forward(z, y).view(-1, *self.shape)


class MLPDiscriminator(Discriminator):
    def __init__(self, shape: tuple[int, ...], is_image: bool, hidden: list[int] = (300, 100),
                 act: str = "leaky_relu", num_classes: int = 0, cond: str = "projection", pieces: int = 5,
                 init: str = "auto", init_gain: float = 1.0, input_scale: float = 1.0):
        super().__init__(hidden[-1], num_classes, cond)
        scale = [Scale(input_scale)] if input_scale != 1.0 else []
        self.body = nn.Sequential(nn.Flatten(), *scale, *_stack([math.prod(shape) + self.in_extra, *hidden], act, pieces=pieces))
        _init(self, init, is_image, init_gain)
