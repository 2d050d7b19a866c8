"""The training state of a run as a plain dict (``ckpt/*.pt``), and its restoring on resume."""
from __future__ import annotations

import torch
from torch import nn

from ganexp.engine import checkpoint
from ganexp.engine.run import Run
from ganexp.errors import GanexpError
from ganexp.hooks import HookSet


def state(run: Run, hooks: HookSet, step: int, sampling_G: nn.Module, best: float | None = None) -> dict:
    s = {
        "G": run.G.state_dict(), "D": run.D.state_dict(),
        "opt_g": run.opt_g.state_dict(), "opt_d": run.opt_d.state_dict(),
        "hooks": hooks.state_dict(), "step": step,
        "rng": checkpoint.rng_state(run.device) | run.dist.rng_state(),
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


def saved_best(run: Run) -> float | None:
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


def restore(run: Run, hooks: HookSet, state: dict) -> tuple[int, list[str]]:
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
    checkpoint.set_rng_state(state["rng"], run.device)
    run.dist.set_rng_state(state["rng"], run.seed, step)
    return step, changed
