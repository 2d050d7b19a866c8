"""Adaptive discriminator augmentation (Karras et al. 2020, "Training GANs with Limited Data", Sec. 2-3)."""
from __future__ import annotations

import torch
import torch.distributed as tdist
from torch import Tensor

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext, StepContext
from ganexp.tricks.ada_ops import OPS, augment


class ADA(Hook):
    """Adaptive discriminator augmentation (Karras et al. 2020, StyleGAN2-ADA, Sec. 2-3, App. B).
    Every batch D sees, real and fake, in the D and the G step, goes through ADA's non-leaking
    pipeline (``ada_ops``: x-flip, 90-degree rotations, integer translation, isotropic and anisotropic
    scaling, rotation, fractional translation; brightness, contrast, luma flip, hue, saturation), each op
    applied with probability p. p adapts to the overfitting heuristic r_t = E[sign(D(real))] over the D
    steps since the last adjustment (D's real logits are those of augmented reals, as in the reference):
    every ``interval`` D steps p moves by sign(r_t - target) * (batch * interval) / (``kimg`` * 1000), so it
    can cross 0..1 in ``kimg`` thousand images, and is kept in [0, 1]. ``p`` fixes it instead (no
    adaptation). p and r_t live on the device (no host sync); logged as ``trick/ada/p`` and
    ``trick/ada/rt``. Penalties that call D themselves (r1, gradient_penalty) see un-augmented reals."""

    name = "ada"

    def __init__(self, target: float = 0.6, interval: int = 4, kimg: float = 500, p: float | None = None,
                 p_init: float = 0.0, ops: str | list[str] = ",".join(OPS)):
        names = tuple(s.strip() for s in (ops if isinstance(ops, (list, tuple)) else str(ops).split(",")) if s.strip())
        bad = [o for o in names if o not in OPS]
        require(not bad and names, f"ada.ops: unknown op {', '.join(bad) or '(none given)'}; use a comma-separated subset of {', '.join(OPS)}")
        require(0 <= target <= 1, f"ada.target must be in [0, 1], got {target}")
        require(interval >= 1, f"ada.interval must be >= 1 (D steps between adjustments), got {interval}")
        require(kimg > 0, f"ada.kimg must be > 0 (thousands of images for p to go from 0 to 1), got {kimg}")
        require(p is None or 0 <= p <= 1, f"ada.p must be in [0, 1] or null (adaptive), got {p}")
        require(0 <= p_init <= 1, f"ada.p_init must be in [0, 1], got {p_init}")
        self.ops, self.target, self.interval, self.kimg, self.fixed = names, target, interval, kimg, p
        self.p = torch.tensor(float(p if p is not None else p_init))
        self.rt = torch.tensor(0.0)  # 0 until the first adjustment
        self.sign_sum, self.count, self.d_count = torch.zeros(()), torch.zeros(()), 0
        self.batch_size = 64

    def setup(self, ctx: SetupContext) -> None:
        require(ctx.info.is_image, f"ada augments images; '{ctx.info.name}' is not an image dataset")
        ch = ctx.info.shape[0]
        color = [o for o in self.ops if o in ("brightness", "contrast", "lumaflip", "hue", "saturation")]
        require(ch in (1, 3) or not color, f"ada's colour ops need 1 or 3 channels; '{ctx.info.name}' has {ch}: "
                                           f"drop {', '.join(color)} from ada.ops")
        self.batch_size = ctx.batch_size
        self.p, self.rt = self.p.to(ctx.device), self.rt.to(ctx.device)
        self.sign_sum, self.count = self.sign_sum.to(ctx.device), self.count.to(ctx.device)

    def on_d_input(self, x: Tensor, step: int) -> Tensor:
        return augment(x, self.p, self.ops)

    def on_d_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        if self.fixed is None and ctx.d_real is not None:
            self.sign_sum += torch.sign(ctx.d_real.detach()).sum().float()
            self.count += ctx.d_real.numel()
        return loss

    @torch.no_grad()
    def adjust(self) -> None:
        """One adaptation of p from the signs gathered since the last (summed over the ranks)."""
        stats = torch.stack([self.sign_sum, self.count])
        if tdist.is_available() and tdist.is_initialized():
            tdist.all_reduce(stats)
        self.rt = stats[0] / stats[1].clamp(min=1)
        step = self.batch_size * self.interval / (self.kimg * 1000)
        self.p = (self.p + torch.sign(self.rt - self.target) * step).clamp(0, 1)
        self.sign_sum.zero_()
        self.count.zero_()

    def after_d_step(self, step: int) -> None:
        self.d_count += 1
        if self.fixed is None and self.d_count % self.interval == 0:
            self.adjust()

    def scalars(self, step: int) -> dict[str, Tensor]:
        return {"p": self.p, "rt": self.rt}

    def state_dict(self) -> dict:
        return {"p": self.p, "rt": self.rt, "d_count": self.d_count, "sign_sum": self.sign_sum, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        if self.fixed is None:  # a fixed p is the config's, not the checkpoint's
            self.p = state["p"].to(self.p.device)
        self.rt = state["rt"].to(self.rt.device)
        self.sign_sum, self.count = state["sign_sum"].to(self.p.device), state["count"].to(self.p.device)
        self.d_count = int(state["d_count"])
