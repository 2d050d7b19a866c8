"""The training engine: ``train(run)`` runs a Run to its last step. It never reads the config."""
from __future__ import annotations

import math
import signal

from ganexp.engine import checkpoint, distributed, snapshot
from ganexp.engine.run import Run
from ganexp.engine.sampler import Sampler
from ganexp.engine.signals import deferred
from ganexp.engine.step import Players, grad_norm
from ganexp.engine.step import step as train_step
from ganexp.engine.visuals import show_samples
from ganexp.errors import GanexpError, TrainingDiverged
from ganexp.hooks import HookSet
from ganexp.rundir.lock import RunLock
from ganexp.rundir.layout import METRICS_JSON, read_metrics
from ganexp.rundir.monitor import tensor_dict_to_floats


def _previous_final(run: Run) -> dict[str, float]:
    """A resumed run's metrics.json starts from what the run had logged before (its last metrics
    may come from an evaluation before the resume)."""
    old = read_metrics(run.out_dir) or {}
    return {k: v for k, v in old.items() if isinstance(v, (int, float)) and k not in ("step",)}


def train(run: Run) -> dict[str, float]:
    """Train ``run`` to ``run.schedule.steps`` generator steps; return the final metrics. The run
    folder is locked (``<run>/.lock``) from the start to every end, so no second run writes into it.
    Every exit (done, Ctrl-C, divergence, an error) writes ``metrics.json`` with a ``status`` and
    the run's hparams summary with every final scalar as an HPARAMS metric. Under DDP rank 0 holds
    the lock and writes every file; the other ranks train and write nothing."""
    if not run.dist.is_main:
        return _train(run)
    lock = RunLock(run.out_dir).acquire()
    if lock.note:
        run.monitor.message(lock.note)
    try:
        return _train(run)
    finally:
        lock.release()


def _train(run: Run) -> dict[str, float]:
    hooks = HookSet([run.loss, *run.tricks])
    sch, mon = run.schedule, run.monitor
    start, changed = snapshot.restore(run, hooks, run.resume_state) if run.resume_state else (0, [])
    if start and start >= sch.steps:
        raise GanexpError(f"the run already reached step {start} of train.steps={sch.steps}; "
                          f"pass a larger train.steps to continue it")
    reuse = hooks.allows_fake_reuse
    ckpt_dir = run.out_dir / "ckpt"
    saved_at = ckpt_dir / "last.pt" if (ckpt_dir / "last.pt").is_file() else None
    best = snapshot.saved_best(run)
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
    dist = run.dist
    dist.catch_signals()
    step, status, error = start, "failed", None

    def state(at: int) -> dict:
        return snapshot.state(run, hooks, at, sampling_G, best) | {"elapsed": mon.elapsed()}

    try:
        while step < sch.steps:
            if dist.should_stop():  # SIGTERM or Slurm's warning (under DDP: on any rank): stop at this step
                raise KeyboardInterrupt
            if run.lr_schedule:
                run.lr_schedule.apply(step, run.opt_g, run.opt_d)
            logs = train_step(run, hooks, step, reuse, players)
            step += 1
            last = step == sch.steps
            if step % sch.log_every == 0 or last:
                logs |= {"grad_norm/g": grad_norm(run.G), "grad_norm/d": grad_norm(run.D),
                         "lr/g": run.opt_g.param_groups[0]["lr"], "lr/d": run.opt_d.param_groups[0]["lr"]}
                logs |= hooks.scalars(step)
                values = dist.average(tensor_dict_to_floats(logs))  # over ranks: all decide alike below
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
            if not dist.is_main:  # samples, evaluation and checkpoints: rank 0 alone (the models are the same on all ranks)
                continue
            if sch.sample_every and (step % sch.sample_every == 0 or last):
                show_samples(run, sampler, step)
            if sch.eval_every and run.evaluators and (step % sch.eval_every == 0 or last):
                metrics = {}
                try:
                    for ev in run.evaluators:
                        metrics.update(ev(sampler, step))
                except Exception:  # a metric failed, the models did not: keep the steps trained so far
                    checkpoint.save(ckpt_dir / "last.pt", state(step))
                    raise
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
        signum, previous = dist.stop_signal
        hooks.restore_live()  # a hook may hold swapped-in weights mid-step (checkpoint_swap)
        if dist.is_main:
            with deferred():  # a second Ctrl-C or SIGTERM waits until the checkpoint is whole
                checkpoint.save(ckpt_dir / "last.pt", state(step))
        error = (f"interrupted at step {step} by {signal.Signals(signum).name}; checkpoint saved, continue with "
                 f"resume={run.out_dir} (or the same command with resume=auto)")
        raise distributed.RunInterrupted(error, signum, previous) from None
    except Exception as e:
        error = str(e) if isinstance(e, GanexpError) else f"{type(e).__name__}: {e}"
        raise
    finally:
        final |= {"step": step, "status": status} | ({"error": error} if error else {})
        try:
            with deferred():
                mon.write_json(METRICS_JSON, final)
                mon.hparams(run.hparams, final)
        except Exception:
            if status == "done":
                raise
            # the error that ended the run is the one to report (a full disk fails this write too)
        finally:
            mon.close()
            dist.release_signals()
            if status in ("done", "interrupted", "diverged"):  # decided alike on every rank: the others
                # wait for rank 0's last files (torchrun kills the rest when one rank exits with an error)
                dist.barrier()
                dist.close()
    return final
