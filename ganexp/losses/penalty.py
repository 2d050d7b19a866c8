"""Lazy penalties on D (Karras et al. 2020): the base class every gradient penalty shares, and R1,
which a loss may carry itself (``loss=nsgan_r1``) or a trick adds to any loss (``tricks=[r1]``)."""
from __future__ import annotations

from torch import Tensor

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext, StepContext
from ganexp.losses.critic import batch_norm_warning, r1_penalty


class LazyPenalty(Hook):
    """A D penalty computed on every ``every``-th D step only and scaled by ``every`` (lazy
    regularisation, Karras et al. 2020, StyleGAN2 Sec. 3.1 and App. B; rosinality's
    ``d_reg_every``): the same expected penalty at a fraction of its cost. D steps are counted
    here, not from the G step, since D may take several steps per G step; the count is checkpointed."""

    #: The penalty's weight in the D loss (before the factor ``every``).
    scale: float = 1.0
    double_backward = True
    #: Where the value is logged; None: ``trick/<name>/value``.
    log_key: str | None = None

    def __init__(self, every: int = 1):
        require(every >= 1, f"{self.name}.every must be >= 1, got {every}")
        self.every, self.d_count, self._last = every, 0, None

    def penalty(self, ctx: StepContext) -> Tensor:
        """The penalty's value on one D step, unweighted (what is logged)."""
        raise NotImplementedError

    def setup(self, ctx: SetupContext) -> None:
        ctx.note(batch_norm_warning(ctx.D, self.name))

    def on_d_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        due = self.d_count % self.every == 0
        self.d_count += 1
        if due:
            p = self.penalty(ctx)
            self._last = p.detach()
            loss = loss + self.every * self.scale * p
        if self._last is not None:  # the last computed value, so every log interval has one
            ctx.logs[self.log_key or f"trick/{self.name}/value"] = self._last
        return loss

    def state_dict(self) -> dict:
        return {"d_count": self.d_count}

    def load_state_dict(self, state: dict) -> None:
        self.d_count = int(state.get("d_count", 0))


class R1(LazyPenalty):
    """Zero-centred penalty on real data (Mescheder et al. 2018, Eq. 9): gamma/2 * E[||grad_x D(x)||^2];
    ``every`` > 1 makes it lazy (Karras et al. 2020, StyleGAN2 uses every=16).

    With augmentation of D's inputs (DiffAugment, instance noise), the gradient is taken at the
    un-augmented reals by default: R1 as Mescheder et al. define it, at the data's own points, and
    what ganexp's presets were tuned with. ``augmented=true`` takes it at the reals as D saw them,
    after augmentation, as the authors' DiffAugment-StyleGAN2 code does (Zhao et al. 2020)."""

    name = "r1"

    def __init__(self, gamma: float = 10.0, every: int = 1, augmented: bool = False):
        super().__init__(every)
        self.gamma, self.scale, self.augmented = gamma, 0.5 * gamma, augmented

    def penalty(self, ctx: StepContext) -> Tensor:
        x = ctx.real_seen if self.augmented and ctx.real_seen is not None else ctx.real
        return r1_penalty(ctx.D, x, ctx.y_real)
