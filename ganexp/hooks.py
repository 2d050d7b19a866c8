"""The engine's fixed points. Losses and tricks are hooks; each overrides only what it needs.

The engine calls a method only on the hooks that override it, so an unused fixed point
costs nothing in the training step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class Targets:
    """Label-based losses' targets: D's target on real and on fake, and G's target for fakes."""

    real: Tensor | float
    fake: Tensor | float
    gen: Tensor | float


@dataclass
class StepContext:
    """What a penalty or an extra loss term may need. ``logs`` collects detached tensors
    that the engine reads (one host sync) only at log intervals."""

    step: int
    G: nn.Module
    D: nn.Module
    real: Tensor
    y_real: Tensor | None
    fake: Tensor
    y_fake: Tensor | None
    d_real: Tensor | None = None
    d_fake: Tensor | None = None
    logs: dict[str, Tensor] = field(default_factory=dict)
    #: The real batch as D saw it in the D step (after ``on_d_input``: DiffAugment, noise).
    real_seen: Tensor | None = None


@dataclass
class SetupContext:
    """What a hook may read, and the one thing it may add (notes), when a run is built
    (``Hook.setup``): the models and optimizers, the loss and the tricks in their order, the data's
    description and the batch arithmetic. Hooks never see the run object itself."""

    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    loss: "Hook"
    #: The tricks in the order they run (the loss is not one of them).
    tricks: list["Hook"]
    #: The data's description (``ganexp.data.DataInfo``): ``is_image``, ``shape``, ``num_classes``, ``name``.
    info: Any
    #: Draws latents from the run's prior: ``latent.z(n, generator)``; ``latent.dim``.
    latent: Any
    device: torch.device
    #: The global batch; ``local_batch`` is this process's share of it.
    batch_size: int
    ranks: int = 1
    d_steps: int = 1
    g_steps: int = 1
    #: Each player's gradient norm is clipped to this before its optimizer step (None: no clipping).
    clip_grad_norm: float | None = None
    #: One-line notes shown when the run starts (warnings about a combination of options).
    notes: list[str] = field(default_factory=list)

    @property
    def local_batch(self) -> int:
        return self.batch_size // self.ranks

    def note(self, text: str | None) -> None:
        """Show ``text`` when the run starts (nothing for None)."""
        if text:
            self.notes.append(text)


class Hook:
    """Base class of losses and tricks. ``name`` keys its state in checkpoints."""

    name: str = "hook"
    #: False when the hook changes G between the D step and the G step (e.g. checkpoint swap),
    #: so the D step's generator forward must not be reused for the G update.
    allows_fake_reuse: bool = True
    #: True when ``after_d_step`` changes D's weights (clipping), so a look-ahead of D's steps
    #: (``unrolled``) that cannot follow it must refuse the combination.
    alters_d_after_step: bool = False
    #: True when the hook differentiates D's gradient again (a gradient penalty): SyncBatchNorm has
    #: no double backward, so train.sync_bn=true refuses such a hook.
    double_backward: bool = False

    def modify_models(self, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module]:
        """At build time, before optimizers exist: architecture changes (spectral norm, extra layers)."""
        return G, D

    def latent_prior(self, prior: str) -> str:
        """At build time, before anything draws a latent: the prior this hook trains G on, given
        the configured one (``latent_prior`` changes it; a checkpoint records the result)."""
        return prior

    def setup(self, ctx: SetupContext) -> None:
        """At build time, after models and optimizers exist: keep references, check compatibility."""

    def on_real(self, x: Tensor, y: Tensor | None, step: int) -> tuple[Tensor, Tensor | None]:
        return x, y

    def on_fake(self, x: Tensor, y: Tensor | None, step: int) -> tuple[Tensor, Tensor | None]:
        """The (detached) fake batch shown to D in the D step."""
        return x, y

    def on_d_input(self, x: Tensor, step: int) -> Tensor:
        """Every batch D sees, real or fake, in the D and the G step."""
        return x

    def on_targets(self, t: Targets, step: int) -> Targets:
        return t

    def on_d_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        return loss

    def on_g_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        return loss

    def after_d_step(self, step: int) -> None:
        pass

    def after_g_step(self, step: int) -> None:
        pass

    def sampling_generator(self, G: nn.Module) -> nn.Module:
        """The generator that samples, grids and evaluation use (EMA swaps its own in)."""
        return G

    def scalars(self, step: int) -> dict[str, Tensor | float]:
        """Values to log at log intervals, under ``trick/<name>/...``."""
        return {}

    def restore_live(self) -> None:
        """Before a checkpoint written mid-step (Ctrl-C): put back the live weights if this hook
        has others swapped in."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


METHODS = ("on_real", "on_fake", "on_d_input", "on_targets", "on_d_loss", "on_g_loss",
           "after_d_step", "after_g_step", "sampling_generator", "scalars", "restore_live")


class HookSet:
    """Calls each fixed point on the hooks that implement it, in order."""

    def __init__(self, hooks: list[Hook]):
        self.hooks = hooks
        self._by = {m: [h for h in hooks if getattr(type(h), m) is not getattr(Hook, m)] for m in METHODS}
        self.allows_fake_reuse = all(h.allows_fake_reuse for h in hooks)

    def active(self, method: str) -> bool:
        return bool(self._by[method])

    def on_real(self, x, y, step):
        for h in self._by["on_real"]:
            x, y = h.on_real(x, y, step)
        return x, y

    def on_fake(self, x, y, step):
        for h in self._by["on_fake"]:
            x, y = h.on_fake(x, y, step)
        return x, y

    def on_d_input(self, x, step):
        for h in self._by["on_d_input"]:
            x = h.on_d_input(x, step)
        return x

    def on_targets(self, t, step):
        for h in self._by["on_targets"]:
            t = h.on_targets(t, step)
        return t

    def on_d_loss(self, loss, ctx):
        for h in self._by["on_d_loss"]:
            loss = h.on_d_loss(loss, ctx)
        return loss

    def on_g_loss(self, loss, ctx):
        for h in self._by["on_g_loss"]:
            loss = h.on_g_loss(loss, ctx)
        return loss

    def after_d_step(self, step):
        for h in self._by["after_d_step"]:
            h.after_d_step(step)

    def after_g_step(self, step):
        for h in self._by["after_g_step"]:
            h.after_g_step(step)

    def sampling_generator(self, G):
        for h in self._by["sampling_generator"]:
            G = h.sampling_generator(G)
        return G

    def scalars(self, step) -> dict[str, Tensor | float]:
        out: dict[str, Tensor | float] = {}
        for h in self._by["scalars"]:
            out.update({f"trick/{h.name}/{k}": v for k, v in h.scalars(step).items()})
        return out

    def restore_live(self) -> None:
        for h in self._by["restore_live"]:
            h.restore_live()

    def state_dict(self) -> dict[str, Any]:
        return {h.name: h.state_dict() for h in self.hooks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for h in self.hooks:
            if h.name in state:
                h.load_state_dict(state[h.name])


def as_float_tensor(v: Tensor | float, like: Tensor) -> Tensor:
    return v if isinstance(v, Tensor) else torch.full_like(like, float(v))
