"""The command line before Hydra sees it: mistakes Hydra reports badly are caught here in one line
(a misspelled key, an unknown option of a multi-select group, a run folder that cannot be used),
and the overrides of a resume or a distributed launch are added."""
from __future__ import annotations

import difflib
import sys
from dataclasses import fields
from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf

from ganexp.build.schema import TrainConfig
from ganexp.engine.launch import launch_env
from ganexp.rundir import files
from ganexp.rundir.layout import override_key


def usage_error(msg: str) -> None:
    """A mistake found before Hydra runs: one line on stderr, exit 2."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def _resume_args(args: list[str]) -> list[str]:
    """A resumed run writes into its own folder (hydra.run.dir) and starts from the overrides it was
    launched with (its .hydra/overrides.yaml), so `resume=RUN train.steps=N` continues the same
    experiment; overrides given now replace those of the same key. Hydra's record of the resume goes
    to .hydra/resume_<time>/, so a resume that fails cannot overwrite the launch record."""
    given = {override_key(a) for a in args}
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
            kept = [o for o in earlier if override_key(o) not in given and override_key(o) not in ("resume", "out_dir")]
            here = [] if "hydra.run.dir" in given else [f"hydra.run.dir={run_dir}"]
            # the launch record in .hydra/ stays as it was; each resume records itself beside it
            here += [] if "hydra.output_subdir" in given else ["hydra.output_subdir=.hydra/resume_${now:%Y-%m-%d_%H-%M-%S}"]
            return [*kept, *here, *args]  # before any --flag: argparse takes overrides in one run
    return args


def parse(args: list[str]) -> list:
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
            keys |= {f.name for f in fields(TrainConfig)}
        elif not name.startswith("override ") and name != "_self_" and (resources.files("ganexp.conf") / name).is_dir():
            groups.add(name)
    return keys | groups, groups


def check_overrides(cmd: str, args: list[str]) -> None:
    """Catch the mistakes Hydra reports badly, before it composes: a misspelled key (Hydra suggests
    `+los=...`) and an unknown option in a multi-select group (`tricks=[nope]`, no list of options).
    Everything else is left to Hydra."""
    keys, groups = _known_keys(cmd)  # each command composes the config of its own name
    for o in parse(args):
        key = o.key_or_group
        if o.type.name != "CHANGE" or key.startswith("hydra") or o.package:
            continue
        top = key.split(".")[0].split("/")[0]
        if top not in keys:
            near = difflib.get_close_matches(top, sorted(keys), n=1)
            value = o.input_line.split("=", 1)[1] if "=" in o.input_line else ""
            hint = f"did you mean {near[0]}{key[len(top):]}={value}? " if near else ""
            usage_error(f"unknown option '{key}'; {hint}(`ganexp {cmd} --help` lists them; +{key}=... adds a new key)")
        if key in groups:
            value = o.value()
            wanted = list(o.sweep_string_iterator()) if o.is_sweep_override() else value if isinstance(value, list) else [value]
            options = _choices(key)
            bad = [v for v in wanted if isinstance(v, str) and v not in options]
            if bad and isinstance(value, list):
                usage_error(f"{key}=[...]: no option '{bad[0]}'. Available options in '{key}': {', '.join(options)}")


def _out_dir_args(args: list[str]) -> list[str]:
    """`out_dir=X` names the whole run folder: Hydra's .hydra/ and train.log go there too. A folder
    that is a file, in use, or holds an earlier run is refused here, before Hydra writes into it."""
    parsed = {o.key_or_group: o for o in parse(args) if o.type.name == "CHANGE"}
    resume, out, run_dir = parsed.get("resume"), parsed.get("out_dir"), parsed.get("hydra.run.dir")
    resuming = resume is not None and resume.value() not in (None, "null")
    if resuming:
        p = Path(str(resume.value())).expanduser()
        d = p if p.is_dir() else p.parent.parent
        who = files.RunLock.holder(d) if d.is_dir() else None
        if who is not None:
            usage_error(files.locked_message(d, who))
        return args
    multirun = any(a in ("-m", "--multirun") for a in args)
    if out is not None and isinstance(out.value(), str):
        if multirun:
            usage_error("out_dir names one run's folder and -m makes one per job: give hydra.sweep.dir=PATH instead")
        raw = next(a for a in args if a.split("=", 1)[0] == "out_dir").split("=", 1)[1]
        if run_dir is not None and run_dir.value() != out.value():
            usage_error("give the run folder once: out_dir=PATH (hydra.run.dir follows it)")
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
        usage_error(problem)
    return args


#: Hydra settings of a DDP rank other than 0: no folder of its own, no .hydra/, no log file.
FOLLOWER = ("hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=none")


def launch_args(args: list[str]) -> list[str]:
    """The run folder's overrides. Under torchrun (or srun) every rank runs this command: rank 0 checks
    and names the run folder as usual (and tells the other ranks when the run is built); the others
    make no folder and write nothing."""
    launch = launch_env()
    if launch is not None and any(a in ("-m", "--multirun") for a in args):
        usage_error("a distributed launch trains one run: drop -m (a sweep of DDP jobs goes through "
                     "hydra/launcher=submitit_slurm with tasks_per_node = GPUs, see README 'Scaling')")
    if launch is None or launch[0] == 0:
        return _resume_args(_out_dir_args(args))
    mine = {override_key(o) for o in FOLLOWER}
    return [*(a for a in _resume_args(args) if override_key(a) not in mine), *FOLLOWER]
