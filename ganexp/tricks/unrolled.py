"""Unrolled GAN (Metz et al. 2017): G is trained against D as it will be k optimiser steps later."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext, StepContext, Targets

Params = dict[str, Tensor]


def _sqrt(v: Tensor) -> Tensor:
    """sqrt with a zero gradient at 0 (a unit with no gradient yet), where torch's is inf and makes NaN."""
    pos = v > 0
    return torch.where(pos, torch.where(pos, v, torch.ones_like(v)).sqrt(), torch.zeros_like(v))


def _adam(p: Tensor, g: Tensor, s: dict, t: int, h: dict) -> tuple[Tensor, dict]:
    b1, b2 = h["betas"]
    g = g + h["weight_decay"] * p if h["weight_decay"] else g
    m = b1 * s["exp_avg"] + (1 - b1) * g
    v = b2 * s["exp_avg_sq"] + (1 - b2) * g * g
    step = h["lr"] / (1 - b1 ** t) * m / (_sqrt(v / (1 - b2 ** t)) + h["eps"])
    return p - step, {"exp_avg": m, "exp_avg_sq": v}


def _sgd(p: Tensor, g: Tensor, s: dict, t: int, h: dict) -> tuple[Tensor, dict]:
    g = g + h["weight_decay"] * p if h["weight_decay"] else g
    mu = h["momentum"]
    if not mu:
        return p - h["lr"] * g, s
    buf = g if s.get("momentum_buffer") is None else mu * s["momentum_buffer"] + (1 - h["dampening"]) * g
    d = g + mu * buf if h["nesterov"] else buf
    return p - h["lr"] * d, {"momentum_buffer": buf}


def _rmsprop(p: Tensor, g: Tensor, s: dict, t: int, h: dict) -> tuple[Tensor, dict]:
    g = g + h["weight_decay"] * p if h["weight_decay"] else g
    sq = h["alpha"] * s["square_avg"] + (1 - h["alpha"]) * g * g
    avg = sq
    out = {"square_avg": sq}
    if h["centered"]:
        ga = h["alpha"] * s["grad_avg"] + (1 - h["alpha"]) * g
        avg, out["grad_avg"] = sq - ga * ga, ga
    d = g / (_sqrt(avg) + h["eps"])
    if h["momentum"]:
        d = h["momentum"] * s["momentum_buffer"] + d
        out["momentum_buffer"] = d
    return p - h["lr"] * d, out


#: The update rules of torch.optim, written as functions of (param, grad, state) so they can be
#: differentiated through; the state starts from D's optimiser's own.
RULES = {torch.optim.Adam: _adam, torch.optim.SGD: _sgd, torch.optim.RMSprop: _rmsprop}
_EMPTY = {torch.optim.Adam: ("exp_avg", "exp_avg_sq"), torch.optim.RMSprop: ("square_avg", "grad_avg", "momentum_buffer"),
          torch.optim.SGD: ()}


class Unrolled(Hook):
    """Unrolled GAN (Metz et al. 2017, Eq. 6-7): G minimises f(theta_G, theta_D^K), where
    theta_D^K comes from K steps of D's own optimiser (its update rule, settings and current
    state) on D's loss, from D's current weights, computed on a functional copy
    (``torch.func.functional_call``); D itself only moves in its own step. With
    ``second_order: true`` G's gradient flows through the K updates (the paper's full
    method); ``false`` treats theta_D^K as a constant (the paper's cheaper variant).

    As in the authors' reference code, the K steps use the step's real batch and G's fakes of
    this G step. The G loss the engine computed is replaced by the loss under theta_D^K (one extra
    D forward); tricks that add to G's loss must come after ``unrolled`` in the list. The unrolled
    D loss is the loss's own (without penalties or D-side tricks)."""

    name = "unrolled"

    def __init__(self, k: int = 5, second_order: bool = True):
        require(isinstance(k, int) and k >= 1, f"unrolled.k must be an integer >= 1, got {k}")
        self.k, self.second_order = k, second_order
        self._t: int | None = None  # D's optimiser step count

    def setup(self, ctx: SetupContext) -> None:
        require(ctx.ranks == 1, "unrolled cannot run under DDP: its K look-ahead steps of D would each see only this "
                                  "rank's share of the batch (no all-reduce inside the unrolled graph); train it on one process")
        opt = ctx.opt_d
        rule = next((r for cls, r in RULES.items() if type(opt) is cls), None)
        require(rule is not None, f"unrolled differentiates through D's optimiser: Adam, SGD or RMSprop, got {type(opt).__name__}")
        h = opt.param_groups[0]
        require(len(opt.param_groups) == 1 and not h.get("amsgrad") and not h.get("maximize"),
                "unrolled supports one parameter group without amsgrad or maximize in D's optimiser")
        clipping = [h.name if h is not ctx.loss else f"loss={type(h).__name__.lower()}" for h in [ctx.loss, *ctx.tricks]
                    if h.alters_d_after_step]
        require(not clipping, f"unrolled's look-ahead steps of D cannot clip D's weights as {', '.join(clipping)} does "
                              f"after each real D step: use loss=wgan_gp, or drop one of them")
        require(ctx.clip_grad_norm is None, "unrolled's look-ahead steps of D do not clip gradients as "
                                            "optimizer.clip_grad_norm does: drop one of them")
        earlier = [t.name for t in ctx.tricks[:ctx.tricks.index(self)] if type(t).on_g_loss is not Hook.on_g_loss]
        require(not earlier, f"list unrolled before {', '.join(earlier)}: it replaces G's adversarial loss and would drop their terms")
        self.rule, self.opt, self.loss = rule, opt, ctx.loss
        self.names = [n for n, _ in ctx.D.named_parameters()]
        self.target_hooks = [t for t in ctx.tricks if type(t).on_targets is not Hook.on_targets]

    def _targets(self, n: int, device, step: int) -> Targets | None:
        t = self.loss.targets(n, device)
        if t is not None:
            for h in self.target_hooks:
                t = h.on_targets(t, step)
        return t

    def _state(self, params: list[Tensor]) -> tuple[list[dict], int]:
        """D's optimiser state per parameter (detached) and its step count; zeros before its first step."""
        states = []
        for p in params:
            s = self.opt.state.get(p, {})
            keys = {*_EMPTY[type(self.opt)], *s} - {"step"}
            states.append({k: s[k].detach() if isinstance(s.get(k), Tensor) else s.get(k, torch.zeros_like(p)) for k in keys})
        if self._t is None:  # read once (a host sync on a capturable optimiser), then counted in after_d_step
            s = self.opt.state.get(params[0], {})
            self._t = int(s["step"]) if "step" in s else 0
        return states, self._t

    def after_d_step(self, step: int) -> None:
        if self._t is not None:
            self._t += 1

    def unroll(self, D: nn.Module, real: Tensor, y_real, fake: Tensor, y_fake, t: Targets | None) -> Params:
        """theta_D^K: K differentiable optimiser steps of D's loss from D's current parameters."""
        params = [p for _, p in D.named_parameters()]
        theta = [p.detach().requires_grad_(True) for p in params]
        buffers = {n: b.clone() for n, b in D.named_buffers()}  # spectral norm's u, BN statistics: D's own stay as they are
        states, t0 = self._state(params)
        h = self.opt.param_groups[0]
        fake = fake if self.second_order else fake.detach()
        for i in range(self.k):
            f = {**buffers, **dict(zip(self.names, theta))}
            d_loss = self.loss.d_loss(functional_call(D, f, (real, y_real)).float(),
                                      functional_call(D, f, (fake, y_fake)).float(), t)
            grads = torch.autograd.grad(d_loss, theta, create_graph=self.second_order)
            new = [self.rule(p, g, s, t0 + i + 1, h) for p, g, s in zip(theta, grads, states)]
            theta, states = [p for p, _ in new], [s for _, s in new]
            if not self.second_order:
                theta = [p.detach().requires_grad_(True) for p in theta]
                states = [{k: (v.detach() if isinstance(v, Tensor) else v) for k, v in s.items()} for s in states]
        return {**buffers, **dict(zip(self.names, theta))}

    def on_g_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        t = self._targets(ctx.fake.shape[0], ctx.fake.device, ctx.step)
        with torch.enable_grad():
            f = self.unroll(ctx.D, ctx.real, ctx.y_real, ctx.fake, ctx.y_fake, t)
        unrolled = self.loss.g_loss(functional_call(ctx.D, f, (ctx.fake, ctx.y_fake)).float(), t)
        ctx.logs[f"trick/{self.name}/plain_g_loss"] = loss.detach()
        return unrolled

    def scalars(self, step: int) -> dict[str, float]:
        return {"k": float(self.k)}
