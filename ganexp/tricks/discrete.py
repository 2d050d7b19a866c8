"""Tricks for discrete outputs (generator.output=relaxed_bernoulli or straight_through)."""
from __future__ import annotations

import math

from torch import Tensor

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext
from ganexp.models.base import RelaxedBernoulli


class TemperatureAnneal(Hook):
    """Anneals the temperature of G's relaxed-Bernoulli output as Jang et al. 2017 (Sec. 4) do:
    tau_t = max(min, start * exp(-rate * t)), so training starts with smooth, low-variance
    gradients and ends close to binary samples. A function of the step: resumes continue it."""

    name = "temperature_anneal"

    def __init__(self, start: float = 1.0, min: float = 0.5, rate: float = 1e-4):
        require(start > 0 and 0 < min <= start and rate >= 0,
                f"temperature_anneal needs start >= min > 0 and rate >= 0, got start={start}, min={min}, rate={rate}")
        self.start, self.min, self.rate = start, min, rate
        self.layers: list[RelaxedBernoulli] = []

    def setup(self, ctx: SetupContext) -> None:
        self.layers = [m for m in ctx.G.modules() if isinstance(m, RelaxedBernoulli)]
        require(bool(self.layers), "temperature_anneal needs a discrete output: "
                                   "generator.output=relaxed_bernoulli or straight_through")

    def temperature_at(self, step: int) -> float:
        return max(self.min, self.start * math.exp(-self.rate * step))

    def on_real(self, x: Tensor, y: Tensor | None, step: int) -> tuple[Tensor, Tensor | None]:
        t = self.temperature_at(step)  # set before G's forwards of this step
        for layer in self.layers:
            layer.temperature = t
        return x, y

    def scalars(self, step: int) -> dict[str, float]:
        return {"temperature": self.temperature_at(step)}
