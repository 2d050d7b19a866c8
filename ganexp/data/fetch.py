"""Opening torchvision datasets with errors a user can act on.

torchvision says "Dataset not found or corrupted. You can use download=True to download it",
which names neither the folder it looked in nor the config key to change; downloads that
fail offline end in a multi-line traceback. Both become one DataError line here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ganexp.errors import DataError

#: What to do when files are missing: the two ways a user can fix it.
FIX = "set dataset.download=true on a machine with internet, or point dataset.root=PATH at an existing copy"


def data_root(root: str | Path) -> Path:
    """``root`` with ``~`` expanded (configs default to ``~/.cache/ganexp/data``)."""
    return Path(str(root)).expanduser()


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0].rstrip(":") if text else type(e).__name__


def open_torchvision(make: Callable[..., Any], name: str, root: Path, where: Path, download: bool | None,
                     **kwargs) -> Any:
    """``make(root=..., download=..., **kwargs)``, a torchvision dataset class; ``where`` is the
    folder it reads (named in the error), ``name`` the ganexp option; ``download=None`` for a
    class that cannot download (LSUN)."""
    try:
        return make(root=str(root), **({} if download is None else {"download": download}), **kwargs)
    except Exception as e:  # noqa: BLE001  torchvision raises RuntimeError, URLError, OSError, pickle and parse errors
        msg = first_line(e)
        if download:
            raise DataError(f"{name}: download into {where} failed ({msg}); check the network, or copy the "
                            f"files there from a networked machine, or point dataset.root=PATH at a copy") from None
        if "not found" in msg.lower():  # torchvision's "Dataset not found or corrupted": absent or bad checksum
            raise DataError(f"{name} not found or corrupted in {where}: {FIX}") from None
        raise DataError(f"{name}: cannot read the files in {where} ({msg}); delete them and set "
                        f"dataset.download=true, or point dataset.root=PATH at a good copy") from None
