"""Writing files safely: the one atomic write, and one line for every way a write can fail.

``atomic_write`` writes a temporary file beside the target and renames it over the target,
so a crash or a full disk never leaves half a file and the previous version stays intact."""
from __future__ import annotations

import errno
import os
import shutil
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


def unwritable(path: str | os.PathLike) -> str | None:
    """Why ``path`` (a file to write, its folders made as needed) cannot be written, in a few words,
    or None: a file where a folder is needed, a read-only file system, no permission."""
    d = Path(path).expanduser().absolute().parent
    while not d.exists():
        d = d.parent
    if not d.is_dir():
        return f"{d} is a file, not a folder"
    if not os.access(d, os.W_OK):
        try:
            read_only = os.statvfs(d).f_flag & os.ST_RDONLY
        except OSError:
            read_only = False
        return f"{d} is on a read-only file system" if read_only else f"no permission to write in {d}"
    return None
