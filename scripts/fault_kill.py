"""Kill a CPU training run at random moments, resume it each time, and check that nothing was
lost: every checkpoint loads with weights_only=True, no resume goes back further than one
checkpoint interval, and the final state equals an uninterrupted run's bit for bit.

Each kill sends the next signal of --signals in turn: SIGKILL (nothing can be saved: the run resumes
from its last interval's checkpoint), or SIGTERM / Slurm's warning signals SIGUSR1, SIGUSR2 (the
run stops at the next step boundary, saves that step, writes metrics.json with status
interrupted, leaves no lock and exits with 128 + the signal's number).

    python scripts/fault_kill.py [--kills 10] [--signals KILL,TERM,USR1,USR2] [--seed 0] [--ckpt-every 10] [--steps N] [--dir DIR]

The run is `ganexp train` as a subprocess (ring8, model=mlp, tricks=[ema,experience_replay,
instance_noise]), logging every step so the step at each kill is known. Each kill waits for a
random step past the last checkpoint (the first one: past the first checkpoint), then a random
few milliseconds more, so kills land inside steps, logging and checkpoint writes alike. Every
resume passes the same train.steps, so `${train.steps}` schedules mean the same throughout.
Prints one row per kill; exits 1 on any failure.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

STEP_LINE = re.compile(r"^step (\d+)/(\d+)\b")


def overrides(args, run_dir: Path) -> list[str]:
    return ["device=cpu", "dataset=ring8", "model=mlp", "tricks=[ema,experience_replay,instance_noise]",
            f"seed={args.seed}", f"train.steps={args.steps}", "train.batch_size=64", "train.log_every=1",
            f"train.ckpt_every={args.ckpt_every}", "train.sample_every=0", "train.num_fixed=16",
            f"hydra.run.dir={run_dir}"]


class Proc:
    """A `ganexp train` subprocess whose stdout lines are read by a thread (no pipe stalls)."""

    def __init__(self, argv: list[str], log: Path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "GANEXP_OFFLINE": "1"}
        self.p = subprocess.Popen([sys.executable, "-m", "ganexp", "train", *argv], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log, self.last_step, self.output = log, 0, []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.p.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _take(self, line: str) -> None:
        self.output.append(line)
        m = STEP_LINE.match(line)
        if m:
            self.last_step = int(m.group(1))

    def wait_for_step(self, target: int, timeout: float) -> bool:
        """True once the run has logged step >= target; False if it ended first."""
        end = time.monotonic() + timeout
        while self.last_step < target:
            try:
                line = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no step {target} within {timeout:.0f} s") from None
            if line is None:
                return False
            self._take(line)
        return True

    def finish(self, timeout: float) -> int:
        """Wait for the process, read the rest of its output (what it logged before dying)."""
        rc = self.p.wait(timeout=timeout)
        while (line := self.lines.get(timeout=timeout)) is not None:
            self._take(line)
        self.log.write_text("".join(self.output))
        return rc


def ckpt_step(run_dir: Path) -> int | None:
    p = run_dir / "ckpt" / "last.pt"
    return int(torch.load(p, map_location="cpu", weights_only=True)["step"]) if p.is_file() else None


def check_ckpts(run_dir: Path) -> list[str]:
    """Every checkpoint file (not the hidden temporary ones) loads with weights_only=True."""
    bad = []
    for p in sorted((run_dir / "ckpt").glob("*.pt")):
        try:
            torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  (any failure to load is the finding)
            bad.append(f"{p.name}: {type(e).__name__}: {e}")
    return bad


def differences(a, b, path: str = "") -> list[str]:
    """Where two checkpoint trees differ (tensors compared bitwise)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only in one" for k in a.keys() ^ b.keys()]
        for k in a.keys() & b.keys():
            out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return [f"{path}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"]
        if not torch.equal(a, b):
            diff = (a.double() - b.double()).abs().max().item() if a.is_floating_point() else "-"
            return [f"{path}: differs (max abs diff {diff})"]
        return []
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


#: Checkpoint entries that must match the uninterrupted run: weights, EMA G, optimizers, trick
#: state (EMA, replay buffer), RNG, step. The config differs by design (resume=, run folder).
COMPARED = ("G", "D", "G_sample", "opt_g", "opt_d", "hooks", "rng", "step", "fixed_z", "fixed_y")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--signals", default="KILL,TERM,USR1,USR2", help="comma-separated; the kills send them in turn")
    ap.add_argument("--seed", type=int, default=0, help="seeds the kill moments and the run")
    ap.add_argument("--ckpt-every", type=int, default=10)
    ap.add_argument("--steps", type=int, default=None, help="default: enough for every kill (2 intervals each, plus 2)")
    ap.add_argument("--dir", type=Path, default=None, help="keep the runs here (default: a temporary folder, removed)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds any one process may take")
    args = ap.parse_args()
    K = args.ckpt_every
    signals = [signal.Signals[f"SIG{name.strip().upper().removeprefix('SIG')}"] for name in args.signals.split(",")]
    args.steps = args.steps or (2 * args.kills + 2) * K
    rng = random.Random(args.seed)
    root = args.dir or Path(tempfile.mkdtemp(prefix="fault_kill_"))
    root.mkdir(parents=True, exist_ok=True)
    run_dir, ref_dir = root / "killed", root / "straight"
    failures: list[str] = []
    rows = []
    t0 = time.monotonic()
    try:
        resumed_from = 0
        for k in range(args.kills):
            argv = overrides(args, run_dir) + ([f"resume={run_dir}"] if k else [])
            proc = Proc(argv, root / f"kill{k:02d}.log")
            # a random step past the last checkpoint (the first kill: past the first checkpoint)
            lo = resumed_from + (K + 1 if k == 0 else 1)
            target = min(rng.randint(lo, resumed_from + 2 * K), args.steps - 1)
            started = time.monotonic()
            if not proc.wait_for_step(target, args.timeout):
                failures.append(f"kill {k}: the run ended before step {target} (rc {proc.finish(args.timeout)}, see {proc.log})")
                break
            time.sleep(rng.uniform(0.0, 0.01))  # somewhere inside the next step, its logging or a checkpoint write
            sig = signals[k % len(signals)]  # each in turn: every kind of stop is tried
            os.kill(proc.p.pid, sig)
            at = time.monotonic() - started
            rc = proc.finish(args.timeout)
            killed_at = proc.last_step  # steps done: each step logs after it completes
            bad = check_ckpts(run_dir)
            failures += [f"kill {k}: {b}" for b in bad]
            saved = ckpt_step(run_dir)
            tmp_left = sorted(p.name for p in (run_dir / "ckpt").glob(".*"))
            rows.append([k, sig.name.removeprefix("SIG"), f"{at:.2f}", killed_at, saved, ",".join(tmp_left) or "-"])
            if saved is None:
                failures.append(f"kill {k}: no ckpt/last.pt after step {killed_at}")
                break
            if sig == signal.SIGKILL and not killed_at - K <= saved <= killed_at:
                failures.append(f"kill {k}: killed after step {killed_at}, checkpoint at step {saved} "
                                f"(more than one interval of {K} back)")
            if sig != signal.SIGKILL:  # a graceful stop: the step it stopped at, saved and recorded
                status = json.loads((run_dir / "metrics.json").read_text()).get("status")
                expect = [(saved == killed_at, f"stopped after step {killed_at}, checkpoint at step {saved}"),
                          (rc == 128 + sig, f"exit code {rc}, not {128 + sig}"),
                          (status == "interrupted", f"metrics.json status {status!r}"),
                          (not (run_dir / ".lock").exists(), "the run folder's lock was left behind")]
                failures += [f"kill {k} ({sig.name}): {msg}" for ok, msg in expect if not ok]
            resumed_from = saved
        # the last resume runs to the end; then the uninterrupted run with the same config
        final = Proc(overrides(args, run_dir) + [f"resume={run_dir}"], root / "final.log")
        rc = final.finish(args.timeout)
        first_line = next((ln for ln in final.output if "resumed from step" in ln), "")
        if rc != 0:
            failures.append(f"final resume exited {rc}: {''.join(final.output[-3:]).strip()}")
        elif f"resumed from step {resumed_from}" not in first_line:
            failures.append(f"final resume: expected 'resumed from step {resumed_from}', got {first_line.strip()!r}")
        for k in range(1, len(rows)):  # each resume started from the checkpoint the kill before left
            log = (root / f"kill{k:02d}.log").read_text()
            if f"resumed from step {rows[k - 1][4]}" not in log:
                failures.append(f"kill {k}: the run did not say 'resumed from step {rows[k - 1][4]}'")
        ref = Proc(overrides(args, ref_dir), root / "straight.log")
        if (rc := ref.finish(args.timeout)) != 0:
            failures.append(f"uninterrupted run exited {rc}")
        if not failures:
            a = torch.load(run_dir / "ckpt" / "last.pt", map_location="cpu", weights_only=True)
            b = torch.load(ref_dir / "ckpt" / "last.pt", map_location="cpu", weights_only=True)
            missing = [k for k in ("G", "D", "G_sample", "opt_g", "opt_d", "hooks") if k not in a]
            failures += [f"checkpoint lacks {k}" for k in missing]
            for key in COMPARED:
                failures += [f"final state differs from the uninterrupted run: {d}"
                             for d in differences(a.get(key), b.get(key), key)]
    finally:
        print(f"{'kill':>4}  {'signal':>6}  {'after s':>7}  {'step at kill':>12}  {'resumed from':>12}  tmp files left")
        for r in rows:
            print(f"{r[0]:>4}  {r[1]:>6}  {r[2]:>7}  {r[3]:>12}  {str(r[4]):>12}  {r[5]}")
        print(f"{len(rows)} kills, train.steps={args.steps}, ckpt_every={K}, {time.monotonic() - t0:.0f} s")
        if args.dir is None and not failures:
            shutil.rmtree(root, ignore_errors=True)
    for f in failures[:20]:
        print(f"FAIL {f}")
    if len(failures) > 20:
        print(f"... and {len(failures) - 20} more")
    if failures and args.dir is None:
        print(f"runs and logs kept in {root}")
    print("ok: every checkpoint loaded, no resume lost more than one interval, final state bitwise equal"
          if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
