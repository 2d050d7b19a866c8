"""The ``ganexp`` command: a subcommand, then Hydra overrides.

Hydra owns argv after the subcommand (so -m, --help, --cfg job and launchers work);
the subcommand is taken off sys.argv first and picks one @hydra.main function (``app``).
This module imports neither Hydra nor torch: `ganexp --help` answers at once, and each
subcommand loads what it needs (``scripts/bench_startup.py`` times it).
"""
from __future__ import annotations

import os
import sys

USAGE = """usage: ganexp <command> [hydra overrides]

commands:
  train    train a GAN           ganexp train loss=lsgan model=dcgan
  sample   sample a checkpoint   ganexp sample ckpt=outputs/train/<run> mode=interp
  eval     score a checkpoint    ganexp eval ckpt=outputs/train/<run>
  compare  tabulate a study      ganexp compare outputs/sweeps/<time> --sort fid_clf --plot fid_clf

`ganexp <command> --help` lists its config groups and options;
`ganexp train --cfg job` prints the composed config; `ganexp train -m loss=gan,lsgan` sweeps."""

NAMES = ("train", "sample", "eval")


def _usage_error(msg: str) -> None:
    from ganexp.cli.argv import usage_error

    usage_error(msg)


def main() -> None:
    import logging

    logging.raiseExceptions = False  # a log file on a full disk: the run's own one-line error says it
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    if not args:
        print(USAGE, file=sys.stderr)
        _usage_error("no command given; choose one of " + ", ".join(sorted([*NAMES, "compare"])))
    cmd, rest = args[0], args[1:]
    if cmd == "compare":  # plain argparse, no Hydra
        from ganexp.study.compare import main as compare_main

        sys.exit(compare_main(rest))
    if cmd not in NAMES:
        _usage_error(f"unknown command '{cmd}'; choose one of {', '.join(sorted([*NAMES, 'compare']))} (ganexp --help)")
    from ganexp.cli import app
    from ganexp.cli.argv import check_overrides, config_error_line, launch_args, parse, usage_error
    from ganexp.study import sweep

    check_overrides(cmd, rest)
    if cmd == "train":
        rest = launch_args(rest)
        if any(a in ("-m", "--multirun") for a in rest):  # sweep folders are named by these keys
            os.environ[sweep.SWEPT_ENV] = ",".join(o.key_or_group.lstrip("+~") for o in parse(rest) if o.is_sweep_override())
    sys.argv = [f"ganexp {cmd}", *rest]
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises what it cannot compose; it becomes one line here
    try:
        app.COMMANDS[cmd]()
    except Exception as e:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if before == "1" or not isinstance(e, (HydraException, OmegaConfBaseException)):
            raise  # asked for, or a bug: the whole traceback
        usage_error(config_error_line(e, cmd))
    finally:
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before
    if sweep.LAST and sweep.LAST["failed"]:
        sys.exit(1)  # the summary line above named the failed jobs


def __getattr__(name: str):  # the Hydra entry points and helpers, loaded on first use
    if name in ("train_task", "train_main", "sample_main", "eval_main", "COMMANDS", "CONF", "_fail", "_stopped",
                "_objective", "_record_resume"):
        from ganexp.cli import app

        return getattr(app, name)
    raise AttributeError(f"module 'ganexp.cli.main' has no attribute '{name}'")
