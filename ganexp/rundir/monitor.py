"""What a run shows: TensorBoard events in the run folder, PNG samples, the console (a rich
progress bar on a terminal, plain lines elsewhere) and the log file.

Every message of a run goes to the logger ``ganexp`` too, so Hydra's file handler writes it into
``<run>/train.log``; conf/train.yaml makes Hydra's console handler a ``ConsoleHandler``, which skips
what was already printed. A closed stdout (``ganexp train | head``) stops the printing, never the run."""
from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import time
from pathlib import Path

from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:  # torch, TensorBoard and torchvision load when a run shows something: `ganexp --help` stays fast
    from rich.progress import Progress
    from torch import Tensor
    from torch.utils.tensorboard import SummaryWriter

from ganexp.rundir import files

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


def image_grid(x: Tensor, nrow: int | None = None) -> Tensor:
    """(N, C, H, W) in [-1, 1] -> one CHW grid in [0, 1]."""
    nrow = nrow or max(1, int(len(x) ** 0.5))
    from torchvision.utils import make_grid

    return make_grid(x.float().cpu(), nrow=nrow, normalize=True, value_range=(-1, 1), padding=2)


def scatter_figure(fake: Tensor, real: Tensor | None = None, lim: float | None = None,
                   field: tuple[Tensor, Tensor, Tensor] | None = None):
    """Generated 2D points over the real ones; ``field`` = (x, y, D output) grids draws the
    discriminator's landscape underneath (where D believes the data is)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8 if field is not None else 4, 4), dpi=80)
    if field is not None:
        gx, gy, v = (t.float().cpu() for t in field)
        filled = ax.contourf(gx, gy, v, levels=20, cmap="Greens", alpha=0.7)
        fig.colorbar(filled, ax=ax, fraction=0.046, pad=0.04).set_label("D output", fontsize=7)
    if real is not None:
        r = real.float().cpu()
        ax.scatter(r[:, 0], r[:, 1], s=2, c="tab:blue", alpha=0.3, label="real")
    f = fake.float().cpu()
    ax.scatter(f[:, 0], f[:, 1], s=2, c="tab:red", alpha=0.5, label="generated")
    if lim:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7, markerscale=4)
    fig.tight_layout()
    return fig


class Monitor:
    """Owns the SummaryWriter and the console for one run folder."""

    def __init__(self, out_dir: Path, total_steps: int, log_every: int, interactive: bool | None = None):
        self.out_dir, self.total, self.log_every = Path(out_dir), total_steps, log_every
        self.interactive = console.is_terminal if interactive is None else interactive
        self.writer: SummaryWriter | None = None
        self.progress: Progress | None = None
        self._task = None
        self._t0 = time.perf_counter()
        self._step0 = 0
        self._elapsed0 = 0.0

    def open(self, start_step: int, elapsed: float = 0.0) -> None:
        """``elapsed``: training seconds of the run before this process (a resume), for stats.jsonl."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # purge_step drops events a crashed run wrote after its last checkpoint (at start_step).
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.out_dir), purge_step=start_step + 1 if start_step else None)
        self._t0, self._step0, self._elapsed0 = time.perf_counter(), start_step, elapsed
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
            )
            self.progress.start()
            self._task = self.progress.add_task("train", total=self.total, completed=start_step, rate="", info="")

    def hparams(self, hp: dict, final: dict) -> None:
        """Hparams summaries in the run's own event file (add_hparams would open a second run). The
        HPARAMS metrics are the final losses and every ``metrics/...`` scalar the run logged, so
        TensorBoard's table ranks a sweep's runs by them. Written when the run ends."""
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hp.items()}
        tags = {t: 0.0 for t in final if t in ("loss/d", "loss/g") or t.startswith("metrics/")}
        from torch.utils.tensorboard.summary import hparams

        for s in hparams(clean, tags):
            self.writer.file_writer.add_summary(s)

    def elapsed(self) -> float:
        """Training seconds of the whole run, earlier processes (before a resume) included."""
        return self._elapsed0 + time.perf_counter() - self._t0

    def steps_per_sec(self, step: int) -> float:
        return (step - self._step0) / max(time.perf_counter() - self._t0, 1e-9)

    def stats(self, step: int, values: dict[str, float]) -> None:
        """One line of ``stats.jsonl`` (append-only, so it survives a crash): step, seconds, values."""
        line = json.dumps({"step": step, "time": round(self.elapsed(), 3), **values})
        with open(self.out_dir / "stats.jsonl", "a") as f:
            f.write(line + "\n")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.stats(step, values)
        rate = self.steps_per_sec(step)
        info = "  ".join(f"{k.split('/')[-1]}={v:.3f}" for k, v in values.items() if k.startswith("loss/"))
        if self.progress is not None:
            self.progress.update(self._task, completed=step, rate=f"{rate:.1f} it/s", info=info)
        say(f"step {step}/{self.total}  {rate:.1f} it/s  {info}", show=self.progress is None)

    def advance(self, step: int) -> None:
        if self.progress is not None:
            self.progress.update(self._task, completed=step)

    def images(self, tag: str, x: Tensor, step: int, save_to: Path | None = None, nrow: int | None = None) -> None:
        grid = image_grid(x, nrow)
        self.writer.add_image(tag, grid, step)
        if save_to is not None:
            save_to.parent.mkdir(parents=True, exist_ok=True)
            from torchvision.utils import save_image

            save_image(grid, save_to)

    def figure(self, tag: str, fig, step: int, save_to: Path | None = None) -> None:
        if save_to is not None:
            save_to.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(save_to)
        self.writer.add_figure(tag, fig, step, close=True)

    def scatter(self, tag: str, fake: Tensor, real: Tensor, lim: float, field, step: int, save_to: Path) -> None:
        """2D samples over the real points and D's landscape (``field``), to TensorBoard and a PNG."""
        self.figure(tag, scatter_figure(fake, real, lim, field), step, save_to)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(f"metrics/{k}", v, step)
        self.stats(step, {f"metrics/{k}": v for k, v in values.items()})

    def provenance(self, record: dict) -> None:
        """Adds this process's record to ``provenance.json`` (a launch, then one per resume)."""
        path = self.out_dir / "provenance.json"
        try:
            runs = json.loads(path.read_text())["runs"]
        except (OSError, ValueError, KeyError, TypeError):
            runs = []
        self.write_json("provenance.json", {"runs": [*runs, record]})

    def message(self, text: str) -> None:
        say(text)

    def write_json(self, name: str, data: dict) -> None:
        files.write_text(self.out_dir / name, json.dumps(data, indent=2, sort_keys=True))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class SilentMonitor(Monitor):
    """The monitor of a DDP rank other than 0: it keeps time (steps/s) and writes nothing, so the
    run folder holds one copy of everything, from rank 0."""

    def open(self, start_step: int, elapsed: float = 0.0) -> None:
        self._t0, self._step0, self._elapsed0 = time.perf_counter(), start_step, elapsed

    def _nothing(self, *args, **kwargs) -> None:
        pass

    hparams = stats = scalars = advance = images = figure = scatter = metrics = provenance = _nothing
    message = write_json = close = _nothing


def tensor_dict_to_floats(d: dict[str, Tensor | float]) -> dict[str, float]:
    """One host sync for a whole dict of scalars."""
    keys = list(d)
    import torch
    from torch import Tensor

    tensors = [d[k] for k in keys if isinstance(d[k], Tensor)]
    vals = iter(torch.stack([t.detach().float().reshape(()).to(tensors[0].device) for t in tensors]).tolist()) if tensors else iter(())
    return {k: (next(vals) if isinstance(d[k], Tensor) else float(d[k])) for k in keys}
