"""Label tricks: they change the targets of label-based losses (gan, nsgan, lsgan) in
``on_targets``. Settings are on the 0-1 scale (fake=0, real=1) and mapped onto the loss's
own targets, v -> fake + v * (real - fake), so they fit LSGAN's (a, b, c) coding as well.

The engine asks for targets in the D step and in the G step. G's non-saturating and
least-squares losses use only the ``gen`` target, which these tricks leave alone; the
minimax loss (loss=gan) reuses D's fake target, so it sees the changed fake targets too.
Several label tricks apply in the order they are listed.
"""
from __future__ import annotations

import torch

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext, Targets
from ganexp.losses import Loss


class LabelTrick(Hook):
    """Checks the loss has targets; keeps the batch size and device for per-sample targets."""

    def setup(self, ctx: SetupContext) -> None:
        loss = ctx.loss
        require(loss.default_targets is not None,
                f"{self.name} needs a loss with real/fake targets ({', '.join(target_losses())}); "
                f"loss is {type(loss).__name__}")
        self.n, self.device = ctx.local_batch, ctx.device
        real, fake, gen = loss.default_targets
        self.target_sum = real + fake  # label_swap reflects G's target through the middle of the scale

    def uniform(self, low: float, high: float) -> torch.Tensor:
        return torch.empty(self.n, device=self.device).uniform_(low, high)

    def per_sample(self, v: torch.Tensor | float) -> torch.Tensor:
        return v if isinstance(v, torch.Tensor) else torch.full((self.n,), float(v), device=self.device)


def target_losses() -> list[str]:
    """The loss classes with real/fake targets, by name (lower case): the ones a label trick can change."""
    todo, found = [Loss], []
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.default_targets is not None:
            found.append(getattr(cls, "option", None) or cls.__name__.lower())
    return sorted(set(found))


def _check_prob(p: float, what: str) -> None:
    require(0.0 <= p <= 1.0, f"{what} must be in [0, 1], got {p}")


class LabelSmoothing(LabelTrick):
    """One-sided label smoothing (Salimans et al. 2016, Sec. 3.4): D's real target becomes
    ``real_target`` (0.9) instead of 1; the fake target stays 0."""

    name = "label_smoothing"

    def __init__(self, real_target: float = 0.9):
        self.real_target = real_target

    def on_targets(self, t: Targets, step: int) -> Targets:
        return Targets(t.fake + self.real_target * (t.real - t.fake), t.fake, t.gen)


class SoftLabels(LabelTrick):
    """Soft labels (ganhacks #6, after Salimans et al. 2016): every sample draws its own target,
    real ones from U[0.7, 1.2] and fake ones from U[0.0, 0.3]."""

    name = "soft_labels"

    def __init__(self, real: tuple[float, float] = (0.7, 1.2), fake: tuple[float, float] = (0.0, 0.3)):
        require(len(real) == 2 and len(fake) == 2 and real[0] <= real[1] and fake[0] <= fake[1],
                f"soft_labels ranges must be [low, high], got real={list(real)} fake={list(fake)}")
        self.real, self.fake = tuple(real), tuple(fake)

    def on_targets(self, t: Targets, step: int) -> Targets:
        span = t.real - t.fake
        return Targets(t.fake + self.uniform(*self.real) * span, t.fake + self.uniform(*self.fake) * span, t.gen)


class LabelFlip(LabelTrick):
    """Noisy labels (ganhacks #6): each of D's real and fake targets is swapped with probability ``p``."""

    name = "label_flip"

    def __init__(self, p: float = 0.05):
        _check_prob(p, "label_flip.p")
        self.p = p

    def on_targets(self, t: Targets, step: int) -> Targets:
        real, fake = self.per_sample(t.real), self.per_sample(t.fake)
        flip_r = torch.rand(self.n, device=self.device) < self.p
        flip_f = torch.rand(self.n, device=self.device) < self.p
        return Targets(torch.where(flip_r, fake, real), torch.where(flip_f, real, fake), t.gen)


class LabelSwap(LabelTrick):
    """The real=0 / fake=1 convention (ganhacks #2, Chintala et al. 2016, "flip labels when training G"):
    real and fake targets trade places and G's target is reflected to match (1 -> 0)."""

    name = "label_swap"

    def on_targets(self, t: Targets, step: int) -> Targets:
        return Targets(t.fake, t.real, self.target_sum - t.gen)
