"""The training engine: runs a Run. It never reads the config."""
from __future__ import annotations

import functools
import json
import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn

from ganexp import checkpoint, distributed, files
from ganexp.errors import GanexpError, TrainingDiverged
from ganexp.hooks import HookSet, StepContext
from ganexp.monitor import tensor_dict_to_floats
from ganexp.run import Run
from ganexp.sampling import Latent


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


class Players:
    """The callables of the training step: G and D themselves, or their ``torch.compile`` wrappers
    (which share the parameters), and the draws of real batches and latents. Penalties, sampling and
    checkpoints use the plain modules.

    Under DDP, G and D are wrapped in DistributedDataParallel (compiled after wrapping); D's forward
    in G's step uses the plain D, which is frozen there and has no gradient to all-reduce; real
    batches and latents are this rank's slice of the global batch's draw."""

    def __init__(self, run: Run):
        dist = run.dist
        G, D = (run.G, run.D) if dist is None else (dist.wrap(run.G), dist.wrap(run.D))
        self.G, self.D = (torch.compile(G), torch.compile(D)) if run.compile else (G, D)
        self.D_frozen = self.D if dist is None else torch.compile(run.D) if run.compile else run.D
        self.real = run.data.sample  # a sharded dataset draws this rank's slice itself
        self.latent = run.latent.sample if dist is None else functools.partial(dist.latent, run.latent)
        self.amp = run.amp
        self.device_type = run.device.type

    def autocast(self):
        """Forward passes and losses under autocast (bf16) when asked; backward runs outside it."""
        return torch.autocast(self.device_type, dtype=self.amp or torch.bfloat16, enabled=self.amp is not None)


def _step(run: Run, hooks: HookSet, step: int, reuse: bool, players: Players) -> dict[str, Tensor]:
    """One generator step preceded by ``d_steps`` discriminator steps."""
    G, D, sch, loss = players.G, players.D, run.schedule, run.loss
    B, device = sch.local_batch, run.device
    fake = y_fake = None
    for i in range(sch.d_steps):
        real, y_real = hooks.on_real(*players.real(B), step)
        z, y_fake = players.latent(B)
        keep_graph = reuse and i == sch.d_steps - 1  # this forward is reused for the G step
        with players.autocast():
            with torch.set_grad_enabled(keep_graph):
                fake = G(z, y_fake)
            fake_d, y_fake_d = hooks.on_fake(fake.detach(), y_fake, step)
            d_real = D(hooks.on_d_input(real, step), y_real).float()
            d_fake = D(hooks.on_d_input(fake_d, step), y_fake_d).float()
            t = loss.targets(B, device)
            t = hooks.on_targets(t, step) if t is not None else None
            ctx = StepContext(step, run.G, run.D, real, y_real, fake_d, y_fake_d, d_real, d_fake)
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
            d_fake_g = players.D_frozen(hooks.on_d_input(fake, step), y_fake).float()
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


def _grad_norm(m: nn.Module) -> Tensor | float:
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else 0.0


def _state(run: Run, hooks: HookSet, step: int, sampling_G: nn.Module, best: float | None = None) -> dict:
    s = {
        "G": run.G.state_dict(), "D": run.D.state_dict(),
        "opt_g": run.opt_g.state_dict(), "opt_d": run.opt_d.state_dict(),
        "hooks": hooks.state_dict(), "step": step,
        "rng": checkpoint.rng_state() | (run.dist.rng_state() if run.dist is not None else {}),
        "config": run.config, "data_info": run.info.as_dict(),
        "fixed_z": run.fixed_z.cpu(), "fixed_y": None if run.fixed_y is None else run.fixed_y.cpu(),
        # what the generator was trained on: sample/eval must draw z the same way
        "latent": {"dim": run.latent.dim, "prior": run.latent.prior, "num_classes": run.latent.num_classes},
    }
    if sampling_G is not run.G:
        s["G_sample"] = sampling_G.state_dict()
    if run.best_metric and best is not None:  # so a resumed run keeps ckpt/best.pt unless it beats it
        s["best"] = {run.best_metric[0]: best, "mode": run.best_metric[1]}
    return s


def _saved_best(run: Run) -> float | None:
    """The best value of the resumed checkpoint's run, when it ranked by the same metric and mode."""
    saved = (run.resume_state or {}).get("best") or {}
    if run.best_metric and saved.get("mode") == run.best_metric[1] and run.best_metric[0] in saved:
        return float(saved[run.best_metric[0]])
    return None


def _load_optimizer(opt: torch.optim.Optimizer, saved: dict, who: str) -> list[str]:
    """Loads the optimizer's state (moments, step counts) but keeps the hyper-parameters it was
    built with from the config, so `resume=RUN optimizer.d.lr=...` takes effect; returns what changed."""
    configured = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    opt.load_state_dict(saved)
    changed = []
    for i, (group, conf) in enumerate(zip(opt.param_groups, configured)):
        for k, v in conf.items():
            if k in group and group[k] != v and not (k == "lr" and "initial_lr" in conf):  # scheduled: initial_lr is the configured lr
                changed.append(f"optimizer.{who}.{k.removeprefix('initial_')}{f'[{i}]' if len(configured) > 1 else ''} {group[k]} -> {v}")
            group[k] = v
    return changed


def _restore(run: Run, hooks: HookSet, state: dict) -> tuple[int, list[str]]:
    """Loads a checkpoint into the run; returns its step and the optimizer settings that changed."""
    try:
        run.G.load_state_dict(state["G"])
        run.D.load_state_dict(state["D"])
        changed = _load_optimizer(run.opt_g, state["opt_g"], "g") + _load_optimizer(run.opt_d, state["opt_d"], "d")
        hooks.load_state_dict(state.get("hooks", {}))
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise GanexpError(f"checkpoint does not fit this run's models or optimizers: {first}") from None
    step = int(state["step"])
    checkpoint.set_rng_state(state["rng"])
    if run.dist is not None:
        run.dist.set_rng_state(state["rng"], run.seed, step)
    else:  # a distributed run's checkpoint: its data and latent stream goes on here
        distributed.continue_shared_stream(state["rng"], run.device)
    return step, changed


def d_landscape(D: nn.Module, lim: float, n: int = 80) -> tuple[Tensor, Tensor, Tensor] | None:
    """D's output on an n x n grid over [-lim, lim]^2 (2D data; eval mode, no autograd), or None
    for a conditional D, which has no single landscape."""
    if getattr(D, "num_classes", 0):
        return None
    device = next(D.parameters()).device
    xs = torch.linspace(-lim, lim, n, device=device)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    was = D.training
    D.eval()
    try:
        with torch.inference_mode():
            v = D(torch.stack([gx.flatten(), gy.flatten()], 1), None)
    finally:
        D.train(was)
    return gx, gy, v.view(n, n)


def _show_samples(run: Run, sampler: Sampler, step: int) -> None:
    x = sampler(run.fixed_z, run.fixed_y)
    name = f"step_{step:07d}.png"
    if run.info.kind == "points":
        real, _ = run.data.take(len(x)) if hasattr(run.data, "take") else run.data.sample(len(x))
        lim = float(real.abs().max()) * 1.3
        run.monitor.scatter("samples/scatter", x, real, lim, d_landscape(run.D, lim), step, run.out_dir / "samples" / name)
    else:
        x, nrow = _grid_by_class(x, run.fixed_y)
        run.monitor.images("samples/grid", x, step, run.out_dir / "samples" / name, nrow)


def _grid_by_class(x: Tensor, y: Tensor | None, most: int = 100) -> tuple[Tensor, int | None]:
    """What the sample grid shows: 64 images; with up to 16 classes, a row per class (the fixed labels
    cycle through the classes, so the first ``k * classes`` hold ``k`` of each), up to ``most`` images."""
    classes = 0 if y is None else int(y.max()) + 1
    per_class = min(len(x), most) // classes if 1 < classes <= 16 else 0
    if per_class == 0:
        return x[:64], None
    keep = per_class * classes
    order = torch.argsort(y[:keep], stable=True)
    return x[:keep][order], per_class


def _previous_final(run: Run) -> dict[str, float]:
    """A resumed run's metrics.json starts from what the run had logged before (its last metrics
    may come from an evaluation before the resume)."""
    try:
        old = json.loads((run.out_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in old.items() if isinstance(v, (int, float)) and k not in ("step",)}


def train(run: Run) -> dict[str, float]:
    """Train ``run`` to ``run.schedule.steps`` generator steps; return the final metrics. The run
    folder is locked (``<run>/.lock``) from the start to every end, so no second run writes into it.
    Every exit (done, Ctrl-C, divergence, an error) writes ``metrics.json`` with a ``status`` and
    the run's hparams summary with every final scalar as an HPARAMS metric. Under DDP rank 0 holds
    the lock and writes every file; the other ranks train and write nothing."""
    if run.dist is not None and not run.dist.is_main:
        return _train(run)
    lock = files.RunLock(run.out_dir).acquire()
    if lock.note:
        run.monitor.message(lock.note)
    try:
        return _train(run)
    finally:
        lock.release()


def _train(run: Run) -> dict[str, float]:
    hooks = HookSet([run.loss, *run.tricks])
    sch, mon = run.schedule, run.monitor
    start, changed = _restore(run, hooks, run.resume_state) if run.resume_state else (0, [])
    if start and start >= sch.steps:
        raise GanexpError(f"the run already reached step {start} of train.steps={sch.steps}; "
                          f"pass a larger train.steps to continue it")
    reuse = hooks.allows_fake_reuse
    ckpt_dir = run.out_dir / "ckpt"
    saved_at = ckpt_dir / "last.pt" if (ckpt_dir / "last.pt").is_file() else None
    best = _saved_best(run)
    final: dict[str, float] = _previous_final(run) if start else {}
    mon.open(start, float((run.resume_state or {}).get("elapsed", 0.0)))
    mon.provenance(run.provenance)
    if start:
        mon.message(f"resumed from step {start}" + (f"; changed: {', '.join(changed)}" if changed else ""))
    for note in run.notes:
        mon.message(note)
    sampling_G = hooks.sampling_generator(run.G)
    sampler = Sampler(sampling_G, run.latent, max(sch.batch_size, 256))
    players = Players(run)
    dist, main = run.dist, run.dist is None or run.dist.is_main
    if dist is not None:
        dist.catch_signals()
    step, status, error = start, "failed", None

    def state(at: int) -> dict:
        return _state(run, hooks, at, sampling_G, best) | {"elapsed": mon.elapsed()}

    try:
        while step < sch.steps:
            if dist is not None and dist.should_stop():  # a rank got SIGINT/SIGTERM: all stop at this step
                raise KeyboardInterrupt
            if run.lr_schedule:
                run.lr_schedule.apply(step, run.opt_g, run.opt_d)
            logs = _step(run, hooks, step, reuse, players)
            step += 1
            last = step == sch.steps
            if step % sch.log_every == 0 or last:
                logs |= {"grad_norm/g": _grad_norm(run.G), "grad_norm/d": _grad_norm(run.D),
                         "lr/g": run.opt_g.param_groups[0]["lr"], "lr/d": run.opt_d.param_groups[0]["lr"]}
                logs |= hooks.scalars(step)
                values = tensor_dict_to_floats(logs)
                if dist is not None:  # the mean over ranks: every rank takes the same decisions below
                    values = dist.average(values)
                bad = {k: v for k, v in values.items() if not math.isfinite(v)}
                if bad:
                    kept = f"last good checkpoint {saved_at} is kept" if saved_at else "no checkpoint was written"
                    status = "diverged"
                    raise TrainingDiverged(f"training diverged at step {step} ({', '.join(f'{k}={v}' for k, v in bad.items())}); "
                                           f"{kept}; lower the learning rates or add a penalty (e.g. tricks=[r1])")
                values["perf/steps_per_sec"] = mon.steps_per_sec(step)
                mon.scalars(step, values)
                final.update(values)
            else:
                mon.advance(step)
            if not main:  # samples, evaluation and checkpoints: rank 0 alone (the models are the same on all ranks)
                continue
            if sch.sample_every and (step % sch.sample_every == 0 or last):
                _show_samples(run, sampler, step)
            if sch.eval_every and run.evaluators and (step % sch.eval_every == 0 or last):
                metrics = {}
                for ev in run.evaluators:
                    metrics.update(ev(sampler, step))
                mon.metrics(step, metrics)
                for ev in run.evaluators:  # optional images (e.g. the 2D density plot)
                    for tag, fig in (ev.figures(sampler, step) if hasattr(ev, "figures") else {}).items():
                        mon.figure(f"metrics/{tag}", fig, step, run.out_dir / "samples" / f"{tag}_{step:07d}.png")
                final.update({f"metrics/{k}": v for k, v in metrics.items()})
                if run.best_metric and run.best_metric[0] in metrics:
                    name, mode = run.best_metric
                    v = metrics[name]
                    if best is None or (v < best if mode == "min" else v > best):
                        best = v
                        checkpoint.save(ckpt_dir / "best.pt", state(step))
            if (sch.ckpt_every and step % sch.ckpt_every == 0) or last:
                checkpoint.save(ckpt_dir / "last.pt", state(step))
                saved_at = ckpt_dir / "last.pt"
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        hooks.restore_live()  # a hook may hold swapped-in weights mid-step (checkpoint_swap)
        if main:
            checkpoint.save(ckpt_dir / "last.pt", state(step))
        error = f"interrupted at step {step}; checkpoint saved, continue with resume={run.out_dir}"
        raise distributed.RunInterrupted(error) from None
    except Exception as e:
        error = str(e) if isinstance(e, GanexpError) else f"{type(e).__name__}: {e}"
        raise
    finally:
        final |= {"step": step, "status": status} | ({"error": error} if error else {})
        try:
            mon.write_json("metrics.json", final)
            mon.hparams(run.hparams, final)
        except Exception:
            if status == "done":
                raise
            # the error that ended the run is the one to report (a full disk fails this write too)
        finally:
            mon.close()
            if dist is not None:
                dist.release_signals()
                if status in ("done", "interrupted", "diverged"):  # decided alike on every rank: the others
                    # wait for rank 0's last files (torchrun kills the rest when one rank exits with an error)
                    dist.barrier()
                    dist.close()
    return final
