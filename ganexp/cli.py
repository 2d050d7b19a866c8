"""The ``ganexp`` command: a subcommand, then Hydra overrides.

Hydra owns argv after the subcommand (so -m, --help, --cfg job and launchers work);
the subcommand is taken off sys.argv first and picks one @hydra.main function.
"""
from __future__ import annotations

import difflib
import os
import sys
from dataclasses import fields
from importlib import resources
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.markup import escape

from ganexp import files, schema, sweep  # schema registers the typed schema before composition
from ganexp.errors import ConfigError, GanexpError, TrainingDiverged
from ganexp.monitor import console, log, say

CONF = "pkg://ganexp.conf"

USAGE = """usage: ganexp <command> [hydra overrides]

commands:
  train    train a GAN           ganexp train loss=lsgan model=dcgan
  sample   sample a checkpoint   ganexp sample ckpt=outputs/train/<run> mode=interp
  eval     score a checkpoint    ganexp eval ckpt=outputs/train/<run>
  compare  tabulate a study      ganexp compare outputs/sweeps/<time> --sort fid_clf --plot fid_clf

`ganexp <command> --help` lists its config groups and options;
`ganexp train --cfg job` prints the composed config; `ganexp train -m loss=gan,lsgan` sweeps."""


def _fail(e: GanexpError) -> None:
    from ganexp import distributed

    rank = distributed.rank()
    if rank:  # rank 0 reports the run's errors (a config error is the same on every rank); the others their own
        if not isinstance(e, (ConfigError, TrainingDiverged, distributed.RunInterrupted, distributed.FollowsRank0)):
            print(f"error (rank {rank}): {e}", file=sys.stderr)
        sys.exit(2)
    if log.hasHandlers():  # train.log under Hydra; never Python's last-resort second copy on stderr
        log.error(str(e), extra={"ganexp_shown": True})
    console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
    sys.exit(2)


def _usage_error(msg: str) -> None:
    """A mistake found before Hydra runs: one line on stderr, exit 2."""
    print(f"error: {msg}", file=sys.stderr)
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

    from ganexp import distributed
    from ganexp.build import build_run
    from ganexp.engine import train

    if distributed.rank():  # one voice per run: rank 0's (Slurm tasks share Hydra's job log file)
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
        if distributed.rank():
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
    from ganexp.generate import sample

    try:
        path = sample(cfg)
    except GanexpError as e:
        _fail(e)
    say(f"wrote {path}")


def _eval_main() -> None:
    from ganexp.evaluate import eval_main

    eval_main()


COMMANDS = {"train": train_main, "sample": sample_main, "eval": _eval_main}
CONFIG_NAMES = {"train": "train", "sample": "sample", "eval": "eval"}


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _resume_args(args: list[str]) -> list[str]:
    """A resumed run writes into its own folder (hydra.run.dir) and starts from the overrides it was
    launched with (its .hydra/overrides.yaml), so `resume=RUN train.steps=N` continues the same
    experiment; overrides given now replace those of the same key. Hydra's record of the resume goes
    to .hydra/resume_<time>/, so a resume that fails cannot overwrite the launch record."""
    given = {_key(a) for a in args}
    for a in args:
        if a.startswith("resume=") and a != "resume=null":
            p = Path(a.split("=", 1)[1]).expanduser()
            run_dir = p if p.is_dir() else p.parent.parent
            if not run_dir.is_dir():
                return args
            recorded = run_dir / ".hydra" / "overrides.yaml"
            try:
                earlier = list(OmegaConf.load(recorded)) if recorded.is_file() else []
            except Exception:  # unreadable: build_run still refuses a checkpoint that does not fit
                earlier = []
            kept = [o for o in earlier if _key(o) not in given and _key(o) not in ("resume", "out_dir")]
            here = [] if "hydra.run.dir" in given else [f"hydra.run.dir={run_dir}"]
            # the launch record in .hydra/ stays as it was; each resume records itself beside it
            here += [] if "hydra.output_subdir" in given else ["hydra.output_subdir=.hydra/resume_${now:%Y-%m-%d_%H-%M-%S}"]
            return [*kept, *here, *args]  # before any --flag: argparse takes overrides in one run
    return args


def _parse(args: list[str]) -> list:
    """Hydra's own parse of each override; flags, their values and what does not parse are skipped
    (Hydra reports those itself)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, out = OverridesParser.create(), []
    for a in args:
        if "=" not in a and not a.startswith("~") or a.startswith("-"):
            continue
        try:
            out += parser.parse_overrides([a])
        except Exception:
            pass
    return out


def _choices(group: str) -> list[str]:
    try:
        return sorted(p.name[:-5] for p in (resources.files("ganexp.conf") / group).iterdir() if p.name.endswith(".yaml"))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _known_keys(config_name: str) -> tuple[set[str], set[str]]:
    """(top-level keys, config groups) of a primary config: its YAML keys, its defaults list, the
    typed schema's fields; what Hydra itself would accept without a +."""
    root = OmegaConf.load(resources.files("ganexp.conf") / f"{config_name}.yaml")
    keys = {k for k in root if k != "defaults"}
    groups = set()
    for d in root.get("defaults") or []:
        name = d if isinstance(d, str) else next(iter(d))
        if name == "train_schema":
            keys |= {f.name for f in fields(schema.TrainConfig)}
        elif not name.startswith("override ") and name != "_self_" and (resources.files("ganexp.conf") / name).is_dir():
            groups.add(name)
    return keys | groups, groups


def _check_overrides(cmd: str, args: list[str]) -> None:
    """Catch the mistakes Hydra reports badly, before it composes: a misspelled key (Hydra suggests
    `+los=...`) and an unknown option in a multi-select group (`tricks=[nope]`, no list of options).
    Everything else is left to Hydra."""
    keys, groups = _known_keys(CONFIG_NAMES[cmd])
    for o in _parse(args):
        key = o.key_or_group
        if o.type.name != "CHANGE" or key.startswith("hydra") or o.package:
            continue
        top = key.split(".")[0].split("/")[0]
        if top not in keys:
            near = difflib.get_close_matches(top, sorted(keys), n=1)
            value = o.input_line.split("=", 1)[1] if "=" in o.input_line else ""
            hint = f"did you mean {near[0]}{key[len(top):]}={value}? " if near else ""
            _usage_error(f"unknown option '{key}'; {hint}(`ganexp {cmd} --help` lists them; +{key}=... adds a new key)")
        if key in groups:
            value = o.value()
            wanted = list(o.sweep_string_iterator()) if o.is_sweep_override() else value if isinstance(value, list) else [value]
            options = _choices(key)
            bad = [v for v in wanted if isinstance(v, str) and v not in options]
            if bad and isinstance(value, list):
                _usage_error(f"{key}=[...]: no option '{bad[0]}'. Available options in '{key}': {', '.join(options)}")


def _out_dir_args(args: list[str]) -> list[str]:
    """`out_dir=X` names the whole run folder: Hydra's .hydra/ and train.log go there too. A folder
    that is a file, in use, or holds an earlier run is refused here, before Hydra writes into it."""
    parsed = {o.key_or_group: o for o in _parse(args) if o.type.name == "CHANGE"}
    resume, out, run_dir = parsed.get("resume"), parsed.get("out_dir"), parsed.get("hydra.run.dir")
    resuming = resume is not None and resume.value() not in (None, "null")
    if resuming:
        p = Path(str(resume.value())).expanduser()
        d = p if p.is_dir() else p.parent.parent
        who = files.RunLock.holder(d) if d.is_dir() else None
        if who is not None:
            _usage_error(files.locked_message(d, who))
        return args
    multirun = any(a in ("-m", "--multirun") for a in args)
    if out is not None and isinstance(out.value(), str):
        if multirun:
            _usage_error("out_dir names one run's folder and -m makes one per job: give hydra.sweep.dir=PATH instead")
        raw = next(a for a in args if a.split("=", 1)[0] == "out_dir").split("=", 1)[1]
        if run_dir is not None and run_dir.value() != out.value():
            _usage_error("give the run folder once: out_dir=PATH (hydra.run.dir follows it)")
        if run_dir is None:
            args = [f"hydra.run.dir={raw}", *args]
        target = Path(out.value()).expanduser()
    elif run_dir is not None and isinstance(run_dir.value(), str) and not multirun:
        target = Path(run_dir.value()).expanduser()
    else:
        return args
    overwrite = "overwrite" in parsed and str(parsed["overwrite"].value()).lower() == "true"
    problem = files.run_dir_problem(target, overwrite=overwrite)
    if problem:
        _usage_error(problem)
    return args


#: Hydra settings of a DDP rank other than 0: no folder of its own, no .hydra/, no log file.
FOLLOWER = ("hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=none")


def _launch_args(args: list[str]) -> list[str]:
    """The run folder's overrides. Under torchrun (or srun) every rank runs this command: rank 0 checks
    and names the run folder as usual (and tells the other ranks when the run is built); the others
    make no folder and write nothing."""
    from ganexp import distributed

    launch = distributed.launch_env()
    if launch is not None and any(a in ("-m", "--multirun") for a in args):
        _usage_error("a distributed launch trains one run: drop -m (a sweep of DDP jobs goes through "
                     "hydra/launcher=submitit_slurm with tasks_per_node = GPUs, see README 'Scaling')")
    if launch is None or launch[0] == 0:
        return _resume_args(_out_dir_args(args))
    mine = {_key(o) for o in FOLLOWER}
    return [*(a for a in _resume_args(args) if _key(a) not in mine), *FOLLOWER]


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    if not args:
        print(USAGE, file=sys.stderr)
        _usage_error("no command given; choose one of " + ", ".join(sorted([*COMMANDS, "compare"])))
    cmd, rest = args[0], args[1:]
    if cmd == "compare":  # plain argparse, no Hydra
        from ganexp.compare import main as compare_main
        sys.exit(compare_main(rest))
    if cmd not in COMMANDS:
        _usage_error(f"unknown command '{cmd}'; choose one of {', '.join(sorted([*COMMANDS, 'compare']))} (ganexp --help)")
    _check_overrides(cmd, rest)
    if cmd == "train":
        rest = _launch_args(rest)
        if any(a in ("-m", "--multirun") for a in rest):  # sweep folders are named by these keys
            os.environ[sweep.SWEPT_ENV] = ",".join(o.key_or_group.lstrip("+~") for o in _parse(rest) if o.is_sweep_override())
    sys.argv = [f"ganexp {cmd}", *rest]
    COMMANDS[cmd]()
    if sweep.LAST and sweep.LAST["failed"]:
        sys.exit(1)  # the summary line above named the failed jobs
