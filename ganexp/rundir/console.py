"""The console and the log file: every message of a run goes to the logger ``ganexp`` too, so
Hydra's file handler writes it into ``<run>/train.log``; conf/train.yaml makes Hydra's console
handler a ``ConsoleHandler``, which skips what was already printed. A closed stdout
(``ganexp train | head``) stops the printing, never the run."""
from __future__ import annotations

import atexit
import logging
import os
import sys

from rich.console import Console

log = logging.getLogger("ganexp")
#: Log-record attribute: the message is already on the console (printed, or shown by the progress bar).
SHOWN = "ganexp_shown"
_stdout_gone = False


def stdout_closed() -> None:
    """The reader of stdout went away: point fd 1 at /dev/null so every later write (rich, logging,
    the interpreter's final flush) succeeds silently, and say so in the log file."""
    global _stdout_gone
    if _stdout_gone:
        return
    _stdout_gone = True
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.__stdout__.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass
    if log.hasHandlers():  # a log file to tell (under Hydra); not Python's last-resort stderr print
        log.warning("stdout was closed (broken pipe): console output stopped; the run goes on and logs to its folder",
                    extra={SHOWN: True})


class _Stdout:
    """sys.stdout as the console sees it (looked up at each write, so pytest's capture and rich's
    progress redirection still work), turning a broken pipe into ``stdout_closed()``."""

    @staticmethod
    def _target():
        out = sys.stdout
        return getattr(out, "rich_proxied_file", out)

    def write(self, text: str) -> int:
        try:
            return self._target().write(text)
        except BrokenPipeError:
            stdout_closed()
            return len(text)

    def flush(self) -> None:
        try:
            self._target().flush()
        except BrokenPipeError:
            stdout_closed()
        except ValueError:  # closed file
            pass

    def isatty(self) -> bool:
        try:
            return self._target().isatty()
        except (ValueError, AttributeError):
            return False

    def fileno(self) -> int:
        return self._target().fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._target(), "encoding", None) or "utf-8"


console = Console(soft_wrap=True, file=_Stdout())
atexit.register(_Stdout().flush)  # before the interpreter's own flush, which would report the broken pipe


def say(text: str, level: int = logging.INFO, show: bool = True) -> None:
    """One message of the run: printed on the console (``show``) and logged to ``ganexp`` (train.log)."""
    log.log(level, text, extra={SHOWN: True})
    if show:
        console.print(text, markup=False, highlight=False)


class ConsoleHandler(logging.Handler):
    """Hydra's console handler for ganexp runs (conf/train.yaml): prints through the shared console
    (above a progress bar; safe on a closed pipe) and skips records ``say`` already printed."""

    def __init__(self, stream=None, level: int = logging.NOTSET):  # stream: Hydra's default passes one
        super().__init__(level)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, SHOWN, False):
            return
        try:
            msg = self.format(record)
            prefix = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
            console.print(prefix + msg, markup=False, highlight=False)
        except Exception:
            self.handleError(record)
