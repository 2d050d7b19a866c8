"""The Hydra side of the `ganexp` command: the task functions of train, sample and eval and how
their errors end a process. Loaded by ``main`` only for those subcommands, so that `ganexp --help`
and `ganexp compare` start without Hydra or torch (neither is imported here at module level)."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.markup import escape

from ganexp.build import schema  # noqa: F401  (registers the typed schema before composition)
from ganexp.engine import launch
from ganexp.errors import ConfigError, GanexpError, TrainingDiverged
from ganexp.rundir.monitor import console, log, say
from ganexp.study import sweep

sweep.register_resolver()  # ${ganexp_job_name:} names sweep folders

CONF = "pkg://ganexp.conf"


def _fail(e: GanexpError) -> None:
    from ganexp.engine import distributed

    rank = launch.rank()
    if rank:  # rank 0 reports the run's errors (a config error is the same on every rank); the others their own
        if not isinstance(e, (ConfigError, TrainingDiverged, distributed.RunInterrupted, distributed.FollowsRank0)):
            print(f"error (rank {rank}): {e}", file=sys.stderr)
        sys.exit(2)
    if log.hasHandlers():  # train.log under Hydra; never Python's last-resort second copy on stderr
        log.error(str(e), extra={"ganexp_shown": True})
    console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
    sys.exit(2)


def _objective(cfg: DictConfig, final: dict | None) -> float | None:
    """What a sweeper optimises: the final ``metrics/<optimized_metric>``; a run that did not finish
    (or gave no finite value) gets the value a minimiser (or maximiser) ranks last."""
    if not cfg.optimized_metric:
        return None
    import math

    v = (final or {}).get(f"metrics/{cfg.optimized_metric}")
    ok = final is not None and final.get("status") == "done" and isinstance(v, (int, float)) and math.isfinite(v)
    return float(v) if ok else sweep.worst(cfg.optimized_mode)


def train_task(cfg: DictConfig) -> float | None:
    """`ganexp train`'s task. A module-level function so parallel launchers (joblib, submitit) pickle
    it by reference. In a sweep a failing job is recorded in its folder and the sweep goes on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ganexp.build import build_run
    from ganexp.engine import train

    if launch.rank():  # one voice per run: rank 0's (Slurm tasks share Hydra's job log file)
        console.quiet = True
        log.disabled = True
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    if hc.runtime.choices.get("hydra/sweeper") == "optuna" and not cfg.optimized_metric:
        _fail(GanexpError("the optuna sweeper needs an objective: set optimized_metric=<metric> "
                          "(e.g. fid_clf, modes_reverse_kl) with metrics=[...] that compute it"))
    if multirun:
        sweep.set_threads(hc)
    final = None
    try:
        run = build_run(cfg)
        say(f"run folder: {run.out_dir}")
        final = train(run)
    except Exception as e:  # noqa: BLE001  (a sweep job's failure is recorded, not fatal)
        if not multirun and isinstance(e, GanexpError):
            _fail(e)
        if not multirun:
            raise
        if launch.rank():
            return None
        msg = str(e) if isinstance(e, GanexpError) else f"{type(e).__name__}: {e}"
        sweep.record_failure(Path(hc.runtime.output_dir), msg)
        console.print(f"[bold red]job failed:[/] {escape(msg)}", highlight=False, soft_wrap=True)
        log.error(msg, extra={"ganexp_shown": True})
        return _objective(cfg, None)
    say(f"done: {run.out_dir}  (tensorboard --logdir {run.out_dir.parent})")
    return _objective(cfg, final)


train_main = hydra.main(config_path=CONF, config_name="train", version_base="1.3")(train_task)


@hydra.main(config_path=CONF, config_name="sample", version_base="1.3")
def sample_main(cfg: DictConfig) -> None:
    from ganexp.sample.generate import sample

    try:
        path = sample(cfg)
    except GanexpError as e:
        _fail(e)
    say(f"wrote {path}")


@hydra.main(config_path=CONF, config_name="eval", version_base="1.3")
def eval_main(cfg: DictConfig) -> None:
    from ganexp.sample.evaluate import evaluate, print_table

    try:
        values, out = evaluate(cfg)
    except GanexpError as e:
        _fail(e)
    print_table(values, cfg.ckpt)
    say(f"wrote {out}")


#: Subcommand -> its Hydra entry point; each composes conf/<subcommand>.yaml.
COMMANDS = {"train": train_main, "sample": sample_main, "eval": eval_main}


