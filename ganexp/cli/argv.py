"""The command line before Hydra sees it: mistakes Hydra reports badly are caught here in one line
(a misspelled key, an unknown option of a multi-select group, a run folder that cannot be used),
and the overrides of a resume or a distributed launch are added."""
from __future__ import annotations

import difflib
import sys
import typing
from dataclasses import fields, is_dataclass
from typing import Any, List
from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf

from ganexp.build.schema import TrainConfig
from ganexp.engine.launch import launch_env
from ganexp.rundir.folder import run_dir_problem
from ganexp.rundir.files import unwritable
from ganexp.rundir.lock import LOCK_NAME
from ganexp.rundir.layout import override_key


def usage_error(msg: str) -> None:
    """A mistake found before Hydra runs: one line on stderr, exit 2. Under torchrun every rank finds
    it; rank 0 alone says it."""
    launch = launch_env()
    if launch is None or launch[0] == 0:
        print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def _resume_args(args: list[str]) -> list[str]:
    """A resumed run writes into its own folder (hydra.run.dir) and starts from the overrides it was
    launched with (its .hydra/overrides.yaml), so `resume=RUN train.steps=N` continues the same
    experiment; overrides given now replace those of the same key. Hydra's record of the resume goes
    to .hydra/resume_<time>/, so a resume that fails cannot overwrite the launch record."""
    given = {override_key(a) for a in args}
    for a in args:
        if a.startswith("resume=") and a not in ("resume=null", "resume=auto"):
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
            # the launch record in .hydra/ stays as it was; an accepted resume records itself beside it
            # (.hydra/resume_<time>/, written by the train task), so a refused one writes nothing
            here += [] if "hydra.output_subdir" in given else ["hydra.output_subdir=null"]
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


def _schema_field(path: list[str]):
    """The type the typed schema gives a dotted key (``["train", "steps"]`` -> int), Any for a
    free-form part (dataset, models, ...), or a (section, known fields) pair for an unknown key."""
    cls = TrainConfig
    for i, part in enumerate(path):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return ".".join(path[:i]), sorted(hints)
        t = hints[part]
        if not is_dataclass(t):
            return t if i == len(path) - 1 else Any
        cls = t
    return cls


def _type_problem(t, v) -> str | None:
    """What is wrong with value ``v`` for a schema type ``t`` (None when it fits)."""
    if isinstance(v, str) and "${" in v:
        return None  # an interpolation: OmegaConf checks it when resolved
    if typing.get_origin(t) is typing.Union:  # Optional[X]
        return None if v is None else _type_problem(next(a for a in typing.get_args(t) if a is not type(None)), v)
    if typing.get_origin(t) in (list, List):
        return None if isinstance(v, list) and all(_type_problem(typing.get_args(t)[0], x) is None for x in v) else "a list"
    number = isinstance(v, (int, float)) and not isinstance(v, bool)
    wanted = {int: (isinstance(v, int) and number, "a whole number"), float: (number, "a number"),
              bool: (isinstance(v, bool), "true or false"), str: (isinstance(v, (str, int, float)), "a word")}.get(t)
    return None if wanted is None or wanted[0] else wanted[1]


def check_overrides(cmd: str, args: list[str]) -> None:
    """Catch the mistakes Hydra reports badly, before it composes, in one line each: a misspelled key
    (Hydra suggests `+los=...`; `+train.stpes=10` would be stored and ignored), a value of the wrong
    type for a typed key (`train.steps=1.5`), an unknown option of a config group (`loss=nope`,
    `tricks=[nope]`, also in a sweep), a sample or eval without its checkpoint."""
    keys, groups = _known_keys(cmd)  # each command composes the config of its own name
    flags = {a.split("=", 1)[0] for a in args if a.startswith("-")}
    if cmd in ("sample", "eval") and not flags & {"-h", "--help", "-c", "--cfg", "-i", "--info", "--hydra-help"} \
            and not any(o.key_or_group == "ckpt" for o in parse(args)):
        usage_error(f"which checkpoint? ganexp {cmd} ckpt=<a run folder or a .pt file>")
    for o in parse(args):
        key = o.key_or_group
        if o.type.name not in ("CHANGE", "ADD") or key.startswith("hydra") or o.package:
            continue
        raw = o.input_line.split("=", 1)[1] if "=" in o.input_line else ""
        top = key.split(".")[0].split("/")[0]
        if top not in keys:
            near = difflib.get_close_matches(top, sorted(keys), n=1)
            hint = f"did you mean {near[0]}{key[len(top):]}={raw}? " if near else ""
            if o.type.name == "ADD":  # +key at the top: a new key of the user's own (for interpolations)
                continue
            usage_error(f"unknown option '{key}'; {hint}(`ganexp {cmd} --help` lists them; +{key}=... adds a new key)")
        if cmd == "train" and top in {f.name for f in fields(TrainConfig)} and "/" not in key:
            field = _schema_field(key.split("."))
            if isinstance(field, tuple):  # an unknown key inside a typed section: stored and ignored otherwise
                section, known = field
                leaf = key[len(section) + 1:].split(".")[0]
                near = difflib.get_close_matches(leaf, known, n=1)
                hint = f"did you mean {section}.{near[0]}={raw}? " if near else ""
                usage_error(f"unknown option '{key.lstrip('+')}': {section} has no '{leaf}'; {hint}"
                            f"(its options: {', '.join(known)})")
            values = list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]
            bad = next((p for p in (_type_problem(field, v) for v in values) if p), None)
            if bad:
                usage_error(f"{key}={raw}: {key} takes {bad}")
        if key in groups:
            value = o.value()
            wanted = list(o.sweep_string_iterator()) if o.is_sweep_override() else value if isinstance(value, list) else [value]
            options = _choices(key)
            bad = [v for v in wanted if isinstance(v, str) and v not in options]
            if bad:
                usage_error(f"{key}={raw}: no option '{bad[0]}'; choose one of {', '.join(options)}")


def config_error_line(e: Exception, cmd: str) -> str:
    """One line for an error Hydra or OmegaConf raised while composing: the first line of the
    innermost message, and for a key the chosen option of a group lacks, the options that have it."""
    import re

    chain, c = [], e
    while c is not None and len(chain) < 10:
        chain.append(c)
        c = c.__cause__ or c.__context__
    text = "\n".join(str(x) for x in chain)
    missing = re.search(r"Could not override '([\w.]+)'.*?Key '(\w+)' is not in struct", text, re.S)
    if missing:
        key, leaf = missing.groups()
        group = key.split(".")[0]
        have = [c for c in _choices(group) if leaf in (OmegaConf.load(resources.files("ganexp.conf") / group / f"{c}.yaml") or {})]
        where = f"the {group} options that have it: {', '.join(have)}" if have else f"no {group} option has it"
        return f"{key}: the {group} chosen has no option '{leaf}' ({where}; `ganexp {cmd} --help` lists the groups)"
    first = next((line.strip() for x in reversed(chain) for line in str(x).splitlines() if line.strip()), type(e).__name__)
    return f"{first} (`ganexp {cmd} --help` lists the options)"


def _out_dir_args(args: list[str]) -> list[str]:
    """`out_dir=X` names the whole run folder: Hydra's .hydra/ and train.log go there too. A folder
    that is a file, in use, or holds an earlier run is refused here, before Hydra writes into it.
    ``resume=auto`` continues the run in out_dir when it has ``ckpt/last.pt``, else starts it there."""
    parsed = {o.key_or_group: o for o in parse(args) if o.type.name == "CHANGE"}
    resume, out, run_dir = parsed.get("resume"), parsed.get("out_dir"), parsed.get("hydra.run.dir")
    multirun = any(a in ("-m", "--multirun") for a in args)
    auto = resume is not None and resume.value() == "auto"
    resuming = resume is not None and resume.value() not in (None, "null", "auto")
    if auto and out is None and run_dir is None and not multirun:
        usage_error("resume=auto continues the run in out_dir or starts it there: give out_dir=PATH too")
    if resuming:
        p = Path(str(resume.value())).expanduser()
        d = p if p.is_dir() else p.parent.parent
        if d.is_dir():  # a folder that is not there is build_run's to refuse (checkpoint not found)
            problem = run_dir_problem(d, resuming=True)  # in use, or on a read-only file system
            if problem:
                usage_error(problem)
        return args
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
    else:  # Hydra's own time-stamped folder under outputs/: it makes it before ganexp runs
        where = "outputs/sweeps" if multirun else "outputs/train"
        why = None if "hydra.sweep.dir" in parsed else unwritable(Path(where) / "x" / LOCK_NAME)
        if why:
            usage_error(f"cannot make the run folder under {Path.cwd() / where}: {why}; "
                        f"give {'hydra.sweep.dir' if multirun else 'out_dir'}=PATH in a writable folder")
        return args
    continuing = auto and (target / "ckpt" / "last.pt").is_file()
    if continuing and "hydra.output_subdir" not in parsed:  # Hydra's launch record stays as it was
        args = [*args, "hydra.output_subdir=null"]
    overwrite = "overwrite" in parsed and str(parsed["overwrite"].value()).lower() == "true"
    problem = run_dir_problem(target, overwrite=overwrite, resuming=continuing)
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
