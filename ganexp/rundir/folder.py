"""The run folder: whether a new run may take it, what an earlier run or attempt left in it, and
its stats.jsonl kept to one row per step when a resumed run replays steps."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ganexp.errors import GanexpError
from ganexp.rundir.files import unwritable, write_error, write_text
from ganexp.rundir.layout import read_metrics
from ganexp.rundir.lock import LOCK_NAME, FolderLocked, RunLock, locked_message

#: What a run leaves in its folder; Hydra's own .hydra/ and train.log do not count (Hydra makes
#: them in a fresh folder before any ganexp code runs).
RUN_FILES = ("ckpt", "samples", "eval", "metrics.json", "stats.jsonl", "provenance.json", "events.out.tfevents.*")


def leftovers(run_dir: Path) -> list[Path]:
    """Every file an earlier run (or attempt) left in ``run_dir``."""
    d = Path(run_dir)
    if not d.is_dir():
        return []
    return sorted(p for pattern in RUN_FILES for p in d.glob(pattern))


def trained(run_dir: Path) -> bool:
    """Whether an earlier run in ``run_dir`` trained at all: it saved a checkpoint, logged a step,
    or its metrics.json says it got past step 0. An attempt that failed before (a data check, a bad
    batch size) trained nothing, so a new run may take its folder."""
    d = Path(run_dir)
    stats = d / "stats.jsonl"
    return (any((d / "ckpt").glob("*.pt")) or (stats.is_file() and stats.stat().st_size > 0)
            or int((read_metrics(d) or {}).get("step", 0) or 0) > 0)


def previous_run(run_dir: Path) -> list[Path]:
    """The files of an earlier run that trained in ``run_dir`` (empty when there is none)."""
    return leftovers(run_dir) if trained(run_dir) else []


def run_dir_problem(run_dir: Path, *, overwrite: bool = False, resuming: bool = False) -> str | None:
    """Why a run may not write into ``run_dir`` (one line), or None. No side effects."""
    d = Path(run_dir)
    if d.exists() and not d.is_dir():
        return f"out_dir {d} is a file, not a folder; choose a folder path (out_dir=PATH)"
    why = unwritable(d / LOCK_NAME)
    if why:
        if resuming:
            return f"cannot continue the run in {d}: {why}; copy the run folder somewhere writable and resume the copy"
        return f"cannot write the run folder {d}: {why}; choose a writable folder (out_dir=PATH)"
    who = RunLock.holder(d) if d.is_dir() else None
    if who is not None:
        return locked_message(d, who)
    if not resuming and not overwrite:
        found = previous_run(d)
        if found:
            return (f"run folder {d} already holds a run ({', '.join(p.name for p in found[:3])}); continue it with "
                    f"resume={d}, replace it with overwrite=true, or choose another out_dir")
    return None


def prepare_run_dir(run_dir: Path, *, overwrite: bool = False, resuming: bool = False) -> list[str]:
    """Refuse a run folder that is a file, not writable, in use, or holds an earlier run (unless
    ``overwrite``: then that run's files are removed); create it. Returns notes for the log."""
    d = Path(run_dir)
    who = RunLock.holder(d) if d.is_dir() else None
    if who is not None:
        raise FolderLocked(locked_message(d, who))
    problem = run_dir_problem(d, overwrite=overwrite, resuming=resuming)
    if problem:
        raise GanexpError(problem)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(d / LOCK_NAME, e) from None
    if not os.access(d, os.W_OK):
        raise GanexpError(f"out_dir {d} is not writable (read-only file system or no permission); "
                          f"choose a writable folder (out_dir=PATH)")
    notes = []
    if not resuming:
        found = leftovers(d)  # with overwrite=true an earlier run's; else an attempt that trained nothing
        for p in found:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        if found:
            why = "overwrite=true: removed the earlier run's" if overwrite else "removed what an attempt that trained nothing left:"
            notes.append(f"{why} {', '.join(p.name for p in found)} from {d}")
    return notes


def drop_stats_after(path: Path, step: int) -> None:
    """Rewrite a stats.jsonl without its rows after ``step`` (and lines that do not parse, a crash mid-write)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            pass
    write_text(path, "".join(f"{line}\n" for line in keep))
