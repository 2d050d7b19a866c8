"""Writing files safely: the one atomic write, and the run folder's lock.

``atomic_write`` writes a temporary file beside the target and renames it over the target,
so a crash or a full disk never leaves half a file and the previous version stays intact.
``RunLock`` marks a run folder as in use by a live process (``<run>/.lock``)."""
from __future__ import annotations

import atexit
import errno
import os
import shutil
import socket
from pathlib import Path
from typing import BinaryIO, Callable

from ganexp.errors import GanexpError


class DiskFull(GanexpError):
    """No space left for a file; nothing was half-written."""


def _size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def write_error(path: Path, e: OSError, size: int | None = None) -> GanexpError:
    """One line for an OSError met while writing ``path``."""
    where = path.parent
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(where)
        need = f"needs {_size(size)}, " if size is not None else ""
        return DiskFull(f"disk full: cannot write {path} ({need}{_size(free) if free is not None else 'unknown'} free in {where}); "
                        f"free some space and run again (the previous {path.name}, if any, is intact)")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = "read-only file system" if e.errno == errno.EROFS else "permission denied"
        return GanexpError(f"cannot write {path}: {why}; choose a writable folder (out_dir=PATH)")
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return GanexpError(f"cannot write {path}: a file stands where a folder is needed on that path; choose another out_dir")
    return GanexpError(f"cannot write {path}: {e.strerror or e}")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], *, size: int | None = None,
                 unique: bool = False) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it to ``path``.

    ``size`` (bytes, when known) is checked against the free space first. ``unique`` names the
    temporary file by process id, for files several processes may write at once (shared caches);
    run-folder files are guarded by the run lock and reuse one name, so a killed run leaves no litter.
    On any error the temporary file is removed; OSErrors become one-line GanexpErrors."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp" if unique else f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if size is not None:
            free = free_bytes(path.parent)
            if free is not None and free < size:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise write_error(path, e, size) from None
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes, **kw) -> Path:
    return atomic_write(path, lambda f: f.write(data), size=len(data), **kw)


def write_text(path: str | os.PathLike, text: str, **kw) -> Path:
    return write_bytes(path, text.encode(), **kw)


def torch_save(path: str | os.PathLike, obj, **kw) -> Path:
    """``torch.save`` through memory: the size is known before the disk is touched, and a full disk
    is a plain OSError (ENOSPC) rather than a C++ stream error."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_bytes(path, buf.getbuffer(), **kw)


# ---------------------------------------------------------------- run folders

#: What a run leaves in its folder; Hydra's own .hydra/ and train.log do not count (Hydra makes
#: them in a fresh folder before any ganexp code runs).
RUN_FILES = ("ckpt", "samples", "eval", "metrics.json", "stats.jsonl", "provenance.json", "events.out.tfevents.*")


def previous_run(run_dir: Path) -> list[Path]:
    """The files of an earlier run in ``run_dir`` (empty when there is none)."""
    d = Path(run_dir)
    if not d.is_dir():
        return []
    return sorted(p for pattern in RUN_FILES for p in d.glob(pattern))


def run_dir_problem(run_dir: Path, *, overwrite: bool = False, resuming: bool = False) -> str | None:
    """Why a run may not write into ``run_dir`` (one line), or None. No side effects."""
    d = Path(run_dir)
    if d.exists() and not d.is_dir():
        return f"out_dir {d} is a file, not a folder; choose a folder path (out_dir=PATH)"
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
    if overwrite and not resuming:
        found = previous_run(d)
        for p in found:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        if found:
            notes.append(f"overwrite=true: removed the earlier run's {', '.join(p.name for p in found)} from {d}")
    return notes


# ---------------------------------------------------------------- run folder lock

LOCK_NAME = ".lock"
_held: dict[Path, "RunLock"] = {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class FolderLocked(GanexpError):
    """Another live run holds the folder."""


class RunLock:
    """``<run>/.lock`` holding "pid host", created with O_EXCL while a run is alive. A lock whose
    process is gone (same host) is stale and taken over; one on another host is never guessed at."""

    def __init__(self, run_dir: Path):
        self.path = Path(os.path.abspath(run_dir)) / LOCK_NAME
        self.note: str | None = None  # set when a stale lock was taken over

    @staticmethod
    def holder(run_dir: Path) -> tuple[int, str] | None:
        """(pid, host) of a live lock on ``run_dir``, None when free or stale on this host."""
        try:
            pid_s, host = (Path(run_dir) / LOCK_NAME).read_text().split()[:2]
            pid = int(pid_s)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return (0, "?")  # unreadable: treat as held, the message names the file
        if host == socket.gethostname() and not _alive(pid):
            return None
        return pid, host

    def acquire(self) -> "RunLock":
        me = f"{os.getpid()} {socket.gethostname()}\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(self.path, e) from None
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                who = self.holder(self.path.parent)
                if who is not None:
                    raise FolderLocked(locked_message(self.path.parent, who)) from None
                old = self.path.read_text().strip() if self.path.exists() else ""
                self.path.unlink(missing_ok=True)
                self.note = f"took over the stale lock {self.path} (process {old or '?'} is gone)"
                continue
            except OSError as e:
                raise write_error(self.path, e) from None
            with os.fdopen(fd, "w") as f:
                f.write(me)
            _held[self.path] = self
            return self
        raise FolderLocked(f"cannot lock {self.path}: another process keeps taking it; check for running ganexp jobs")

    def release(self) -> None:
        if _held.pop(self.path, None) is None:
            return
        try:
            if self.path.read_text().split()[0] == str(os.getpid()):
                self.path.unlink()
        except (OSError, IndexError):
            pass


def locked_message(run_dir: Path, who: tuple[int, str]) -> str:
    pid, host = who
    return (f"run folder {run_dir} is in use by another run (process {pid} on {host}, see {Path(run_dir) / LOCK_NAME}); "
            f"wait for it to end, or choose another out_dir (delete the lock file only if no run is alive)")


def release_lock(run_dir: Path) -> None:
    """Release this process's lock on ``run_dir`` (no-op when it holds none)."""
    lock = _held.get(Path(os.path.abspath(run_dir)) / LOCK_NAME)
    if lock is not None:
        lock.release()


@atexit.register
def _release_all() -> None:  # every exit path, including an uncaught exception
    for lock in list(_held.values()):
        lock.release()
