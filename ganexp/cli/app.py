"""The Hydra side of the `ganexp` command: the task functions of train, sample and eval and how
their errors and stops end a process. Loaded by ``main`` only for those subcommands, so that
`ganexp --help` and `ganexp compare` start without Hydra or torch."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.markup import escape

from ganexp.build import schema  # noqa: F401  (registers the typed schema before composition)
from ganexp.engine import launch
from ganexp.errors import ConfigError, GanexpError, TrainingDiverged
from ganexp.rundir.console import console, log, say
from ganexp.rundir.summary import eval_summary, run_line
from ganexp.study import sweep

sweep.register_resolver()  # ${ganexp_job_name:} names sweep folders

CONF = "pkg://ganexp.conf"


def _fail(e: GanexpError, to_log: bool = True) -> None:
    """One line on the console (and in train.log unless ``to_log`` is false), exit 2."""
    from ganexp.engine import distributed

    rank = launch.rank()
    if rank:  # rank 0 reports the run's errors (a config error is the same on every rank); the others their own
        if not isinstance(e, (ConfigError, TrainingDiverged, distributed.RunInterrupted, distributed.FollowsRank0)):
            print(f"error (rank {rank}): {e}", file=sys.stderr)
        sys.exit(2)
    if to_log and log.hasHandlers():  # train.log under Hydra; never Python's last-resort second copy on stderr
        log.error(str(e), extra={"ganexp_shown": True})
    console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
    sys.exit(2)


def _stopped(e) -> None:
    """A run that a signal stopped has saved its state: one line, then the signal goes to the handler
    it had before (submitit's requeue), or the process ends with 128 + signum (README: exit codes)."""
    from ganexp.engine.signals import pass_on

    if not launch.rank():
        log.warning(str(e), extra={"ganexp_shown": True})
        console.print(f"[bold yellow]stopped:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
    pass_on(e.signum, e.previous)


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
    from ganexp.engine import distributed, train

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
    run, final, t0 = None, None, time.perf_counter()
    try:
        run = build_run(cfg)
        if cfg.resume:
            _record_resume(cfg, hc, run.out_dir)
        say(f"run folder: {run.out_dir}")
        final = train(run)
    except distributed.RunInterrupted as e:  # saved: its folder says so (metrics.json status: interrupted)
        _stopped(e)
    except Exception as e:  # noqa: BLE001  (a sweep job's failure is recorded, not fatal)
        if not multirun and isinstance(e, GanexpError):
            _fail(e, to_log=run is not None or not cfg.resume)  # a refused resume writes nothing
        if not multirun:
            raise
        if launch.rank():
            return None
        msg = str(e) if isinstance(e, GanexpError) else f"{type(e).__name__}: {e}"
        sweep.record_failure(Path(hc.runtime.output_dir), msg)
        console.print(f"[bold red]job failed:[/] {escape(msg)}", highlight=False, soft_wrap=True)
        log.error(msg, extra={"ganexp_shown": True})
        return _objective(cfg, None)
    say(run_line(final, time.perf_counter() - t0, run.out_dir, run.best_metric))
    return _objective(cfg, final)


def _record_resume(cfg: DictConfig, hc, run_dir: Path) -> None:
    """Hydra's record of a resume (its config and overrides), written once the run is accepted, beside
    the launch record: .hydra/resume_<time>/ (a refused resume leaves the folder as it was)."""
    import time

    from omegaconf import OmegaConf

    from ganexp.rundir import files

    where = run_dir / ".hydra" / f"resume_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    files.write_text(where / "config.yaml", OmegaConf.to_yaml(cfg))
    files.write_text(where / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(hc.overrides.task))))


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
    import json

    report = json.loads(out.read_text())  # the step and seconds evaluate() recorded
    say(eval_summary(values, report["step"], report["seconds"], out))


#: Subcommand -> its Hydra entry point; each composes conf/<subcommand>.yaml.
COMMANDS = {"train": train_main, "sample": sample_main, "eval": eval_main}
