"""One training step: ``d_steps`` discriminator updates, then ``g_steps`` generator updates, with
the hooks at their fixed points. The hot path: no host syncs, no Python loop over a batch."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ganexp.engine.run import Run
from ganexp.hooks import HookSet, StepContext


class Players:
    """The callables of the training step: G and D themselves, or their ``torch.compile`` wrappers
    (which share the parameters), and the draws of real batches and latents. Penalties, sampling and
    checkpoints use the plain modules.

    Under DDP, G and D are wrapped in DistributedDataParallel (compiled after wrapping); D's forward
    in G's step uses the plain D, which is frozen there and has no gradient to all-reduce; real
    batches and latents are this rank's slice of the global batch's draw."""

    def __init__(self, run: Run):
        G, D = run.dist.wrap(run.G), run.dist.wrap(run.D)  # one process: the modules themselves
        mode = run.compile_mode if run.compile_mode != "default" else None
        if run.compile:
            # dynamo's graphs and recompile counts are per process and per forward's code: another run in
            # this process (a sweep, a benchmark) must not inherit them and hit the recompile limit
            torch._dynamo.reset()
        compiled = (lambda m: torch.compile(m, mode=mode)) if run.compile else (lambda m: m)  # noqa: E731
        self.G, self.D = compiled(G), compiled(D)
        # G's step runs the plain D; one process reuses the D above, which is that D or its compiled form.
        # Its D graph differs from the D step's (an input that needs grad, frozen weights): one graph each.
        self.D_frozen = self.D if D is run.D else compiled(run.D)
        # CUDA graphs (compile_mode=reduce-overhead) replay into the same output buffers: mark each step
        self.mark_step = run.compile and run.compile_mode == "reduce-overhead" and run.device.type == "cuda"
        self.real = run.data.sample  # a sharded dataset draws this rank's slice itself
        self.latent = run.dist.latent_sampler(run.latent)
        self.amp = run.amp
        self.device_type = run.device.type

    def autocast(self):
        """Forward passes and losses under autocast (bf16) when asked; backward runs outside it."""
        return torch.autocast(self.device_type, dtype=self.amp or torch.bfloat16, enabled=self.amp is not None)

    def d_input(self, x: Tensor) -> Tensor:
        """D's input in the autocast dtype: fp32 reals and bf16 fakes would be two compiled graphs of D."""
        return x.to(self.amp) if self.amp is not None and x.is_floating_point() else x


def step(run: Run, hooks: HookSet, step: int, reuse: bool, players: Players) -> dict[str, Tensor]:
    """One generator step preceded by ``d_steps`` discriminator steps."""
    G, D, sch, loss = players.G, players.D, run.schedule, run.loss
    B, device = sch.local_batch, run.device
    fake = y_fake = None
    if players.mark_step:
        torch.compiler.cudagraph_mark_step_begin()
    for i in range(sch.d_steps):
        real, y_real = hooks.on_real(*players.real(B), step)
        z, y_fake = players.latent(B)
        keep_graph = reuse and i == sch.d_steps - 1  # this forward is reused for the G step
        with players.autocast():
            with torch.set_grad_enabled(keep_graph):
                fake = G(z, y_fake)
            fake_d, y_fake_d = hooks.on_fake(fake.detach(), y_fake, step)
            real_seen = hooks.on_d_input(real, step)
            d_real = D(players.d_input(real_seen), y_real).float()
            d_fake = D(players.d_input(hooks.on_d_input(fake_d, step)), y_fake_d).float()
            t = loss.targets(B, device)
            t = hooks.on_targets(t, step) if t is not None else None
            ctx = StepContext(step, run.G, run.D, real, y_real, fake_d, y_fake_d, d_real, d_fake, real_seen=real_seen)
            d_loss = hooks.on_d_loss(loss.d_loss(d_real, d_fake, t), ctx)
        run.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        if run.clip_grad_norm:
            nn.utils.clip_grad_norm_(run.D.parameters(), run.clip_grad_norm)
        run.opt_d.step()
        hooks.after_d_step(step)

    run.D.requires_grad_(False)  # G's backward needs no D weight gradients
    for j in range(sch.g_steps):
        with players.autocast():
            if j > 0 or not reuse:
                z, y_fake = players.latent(B)
                fake = G(z, y_fake)
            d_fake_g = players.D_frozen(players.d_input(hooks.on_d_input(fake, step)), y_fake).float()
            t = loss.targets(B, device)
            t = hooks.on_targets(t, step) if t is not None else None
            gctx = StepContext(step, run.G, run.D, real, y_real, fake, y_fake, None, d_fake_g, ctx.logs)
            g_loss = hooks.on_g_loss(loss.g_loss(d_fake_g, t), gctx)
        run.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        if run.clip_grad_norm:
            nn.utils.clip_grad_norm_(run.G.parameters(), run.clip_grad_norm)
        run.opt_g.step()
        hooks.after_g_step(step)
    run.D.requires_grad_(True)

    out = {"loss/d": d_loss.detach(), "loss/g": g_loss.detach(),
           "d/real": d_real.detach().mean(), "d/fake": d_fake.detach().mean()}
    out.update(ctx.logs)
    return out


def grad_norm(m: nn.Module) -> Tensor | float:
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else 0.0



