"""Generated batches for sample grids and metrics, away from training's random stream."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn

from ganexp.models.latent import Latent


class Sampler:
    """Generated batches from the sampling generator (EMA when on), in eval mode, no autograd.
    It draws from a forked RNG, so how often a run samples or evaluates never changes its training."""

    def __init__(self, G: nn.Module, latent: Latent, batch_size: int):
        self.G, self.latent, self.batch_size = G, latent, batch_size

    @contextmanager
    def _eval(self):
        was = self.G.training
        self.G.eval()
        cuda = [self.latent.device] if self.latent.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=cuda), torch.inference_mode():
                yield
        finally:
            self.G.train(was)

    def batches(self, n: int) -> Iterator[tuple[Tensor, Tensor | None]]:
        with self._eval():
            for i in range(0, n, self.batch_size):
                z, y = self.latent.sample(min(self.batch_size, n - i))
                yield self.G(z, y), y

    def __call__(self, z: Tensor, y: Tensor | None) -> Tensor:
        with self._eval():
            return torch.cat([self.G(z[i:i + self.batch_size], None if y is None else y[i:i + self.batch_size])
                              for i in range(0, len(z), self.batch_size)])
