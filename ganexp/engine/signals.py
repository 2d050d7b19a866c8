"""The signals that stop a run at a step boundary: a scheduler's SIGTERM (time limit, preemption,
``scancel``) and Slurm's warning signal (``#SBATCH --signal=USR1@90`` or USR2, submitit's default).

While a run trains, each of them only records that it came; the loop stops at the next step
boundary, writes ``ckpt/last.pt`` and ``metrics.json`` (``status: interrupted``) and releases the
run folder, as Ctrl-C does. Then the handler that was there before gets the signal, so a launcher
that requeues on it (submitit) still does, and otherwise the process ends with ``128 + signum``.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

#: Stop at the next step boundary on these (Ctrl-C, SIGINT, interrupts at once: KeyboardInterrupt).
STOP = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, name))


class StopSignals:
    """Records the first stop signal while installed; ``also`` adds signals (DDP: SIGINT too)."""

    def __init__(self, also: tuple[int, ...] = ()):
        self.signals = (*STOP, *also)
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    def _record(self, signum: int, frame) -> None:
        if self.received is None:
            self.received = signum

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers belong to the main thread (a run started from another keeps the defaults)
        for s in self.signals:
            self.previous[s] = signal.signal(s, self._record)

    def release(self) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)
        self.previous.clear()


@contextmanager
def deferred() -> Iterator[list[int]]:
    """Signals that arrive inside the block (Ctrl-C included) wait until it ends: a run's last
    checkpoint is written whole even when the user presses Ctrl-C again or the scheduler repeats
    its SIGTERM. Yields the list of the signals that came."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    came: list[int] = []
    sigs = (signal.SIGINT, *STOP)
    old = {s: signal.signal(s, lambda signum, frame: came.append(signum)) for s in sigs}
    try:
        yield came
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def pass_on(signum: int, previous: Any) -> None:
    """After the run saved: hand the signal to the handler that was there before (submitit's requeue),
    or end the process as the signal's default would, with exit code 128 + signum."""
    if callable(previous):
        previous(signum, None)
    if previous is signal.SIG_IGN:
        return
    raise SystemExit(128 + signum)

