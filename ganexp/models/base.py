"""Shared shape of generators and discriminators, so tricks can reach into any model.

G(z, y) -> x.  D(x, y) = head(features(x)) [+ projection of y onto the features]:
tricks that add layers to D (minibatch discrimination, minibatch stddev) or need its
features (feature matching) work on ``D.body`` / ``D.features`` / ``D.head`` alone.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


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


class Generator(nn.Module):
    """``body`` maps the latent input (z, with a learned class embedding appended when
    conditional, Mirza & Osindero 2014) to a sample."""

    def __init__(self, z_dim: int, num_classes: int = 0, embed_dim: int = 0):
        super().__init__()
        self.z_dim, self.num_classes = z_dim, num_classes
        embed_dim = embed_dim or (num_classes if num_classes else 0)
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        self.in_dim = z_dim + (embed_dim if num_classes else 0)
        self.body: nn.Module = nn.Identity()

    def latent_input(self, z: Tensor, y: Tensor | None) -> Tensor:
        if self.embed is None:
            return z
        if y is None:
            raise ValueError("a conditional generator needs class labels y")
        return torch.cat([z, self.embed(y)], dim=1)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.body(self.latent_input(z, y))


class Discriminator(nn.Module):
    """``body`` maps x to a flat feature vector; ``head`` to one logit. When conditional, the
    projection <embed(y), features> is added (Miyato & Koyama 2018)."""

    def __init__(self, feat_dim: int, num_classes: int = 0):
        super().__init__()
        self.num_classes, self.feat_dim = num_classes, feat_dim
        self.body: nn.Module = nn.Identity()
        self.head = nn.Linear(feat_dim, 1)
        self.embed = nn.Embedding(num_classes, feat_dim) if num_classes else None

    def features(self, x: Tensor) -> Tensor:
        return self.body(x).flatten(1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        f = self.features(x)
        out = self.head(f).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional discriminator needs class labels y")
            out = out + (self.embed(y) * f).sum(dim=1)
        return out


def activation(name: str) -> nn.Module:
    table = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh, "elu": nn.ELU}
    if name not in table:
        from ganexp.errors import ConfigError

        raise ConfigError(f"unknown activation '{name}'; choose one of {sorted(table)}")
    return table[name]()
