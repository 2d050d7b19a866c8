"""The run folder's lock: ``<run>/.lock`` marks a folder as in use by a live process, from the
start of a run to every end (done, Ctrl-C, a signal, an error), so no second run writes into it."""
from __future__ import annotations

import atexit
import os
import socket
from pathlib import Path

from ganexp.errors import GanexpError
from ganexp.rundir.files import write_error

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
