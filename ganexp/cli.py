"""The ``ganexp`` command: a subcommand, then Hydra overrides.

Hydra owns argv after the subcommand (so -m, --help, --cfg job and launchers work);
the subcommand is taken off sys.argv first and picks one @hydra.main function.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.markup import escape

from ganexp import schema  # noqa: F401  (registers the typed schema before composition)
from ganexp.errors import GanexpError
from ganexp.monitor import console

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
    console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
    sys.exit(2)


@hydra.main(config_path=CONF, config_name="train", version_base="1.3")
def train_main(cfg: DictConfig) -> float | None:
    from ganexp.build import build_run
    from ganexp.engine import train

    try:
        run = build_run(cfg)
        console.print(f"run folder: {run.out_dir}", highlight=False)
        final = train(run)
    except GanexpError as e:
        _fail(e)
    console.print(f"done: {run.out_dir}  (tensorboard --logdir {run.out_dir.parent})", highlight=False)
    return final.get("loss/g")


@hydra.main(config_path=CONF, config_name="sample", version_base="1.3")
def sample_main(cfg: DictConfig) -> None:
    from ganexp.generate import sample

    try:
        path = sample(cfg)
    except GanexpError as e:
        _fail(e)
    console.print(f"wrote {path}", highlight=False)


COMMANDS = {"train": train_main, "sample": sample_main}


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


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    cmd, rest = args[0], args[1:]
    if cmd == "compare":  # plain argparse, no Hydra
        from ganexp.compare import main as compare_main
        sys.exit(compare_main(rest))
    if cmd == "eval":
        try:
            from ganexp.evaluate import eval_main
        except ImportError:
            print("error: `ganexp eval` is not available in this version", file=sys.stderr)
            sys.exit(2)
        COMMANDS["eval"] = eval_main
    if cmd not in COMMANDS:
        print(f"error: unknown command '{cmd}'; choose one of {', '.join(sorted(COMMANDS))} (ganexp --help)", file=sys.stderr)
        sys.exit(2)
    if cmd == "train":
        rest = _resume_args(rest)
    sys.argv = [f"ganexp {cmd}", *rest]
    COMMANDS[cmd]()
