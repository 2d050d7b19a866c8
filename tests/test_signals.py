"""Long runs survive the signals a cluster sends: SIGTERM (time limit, preemption, scancel) and
Slurm's warning signals SIGUSR1/SIGUSR2 stop a real `ganexp train` at a step boundary with its
state saved, and the same command with resume=auto finishes it bitwise as an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganexp.engine.signals import deferred
from tests.conftest import state_differences

GANEXP = str(Path(sys.executable).with_name("ganexp"))
RUN = ["device=cpu", "experiment=ring8_mlp", "seed=0", "train.steps=400", "train.batch_size=64", "train.log_every=10",
       "train.ckpt_every=1000", "train.sample_every=0", "generator.hidden=[32,32]", "discriminator.hidden=[32,32]",
       "metrics=[]", "tricks=[ema]"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "GANEXP_OFFLINE": "1"}
#: What must match the uninterrupted run: weights, EMA, optimizers, trick state, RNG, step, fixed latents.
COMPARED = ("G", "D", "G_sample", "opt_g", "opt_d", "hooks", "rng", "step", "fixed_z", "fixed_y")


def ckpt(run: Path) -> dict:
    return torch.load(run / "ckpt" / "last.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
    """The same run without interruption."""
    out = tmp_path_factory.mktemp("straight") / "run"
    r = subprocess.run([GANEXP, "train", *RUN, f"out_dir={out}"], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return ckpt(out)


def stop_mid_run(run: Path, sig: int) -> tuple[int, str]:
    """Start the run, send ``sig`` once it has logged a step, return its exit code and output."""
    p = subprocess.Popen([GANEXP, "train", *RUN, f"out_dir={run}", "resume=auto"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=ENV)
    end = time.monotonic() + 300
    while not ((run / "stats.jsonl").is_file() and (run / "stats.jsonl").stat().st_size) and p.poll() is None:
        assert time.monotonic() < end, "the run logged no step in 300 s"
        time.sleep(0.05)
    os.kill(p.pid, sig)
    out, _ = p.communicate(timeout=300)
    return p.returncode, out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2], ids=lambda s: s.name)
def test_a_stop_signal_saves_the_step_and_resume_auto_finishes_bitwise(sig, straight, tmp_path):
    run = tmp_path / "run"
    rc, out = stop_mid_run(run, sig)
    assert rc == 128 + sig, out[-2000:]
    assert "Traceback" not in out
    last = [line for line in out.splitlines() if line.strip()][-1]
    saved = json.loads((run / "metrics.json").read_text())
    step = saved["step"]
    assert last.startswith(f"stopped: interrupted at step {step} by {sig.name}; checkpoint saved")
    assert saved["status"] == "interrupted" and 0 < step < 400
    assert ckpt(run)["step"] == step  # the step it stopped at, not the last interval's
    assert not (run / ".lock").exists()
    again = subprocess.run([GANEXP, "train", *RUN, f"out_dir={run}", "resume=auto"], capture_output=True, text=True,
                           env=ENV, timeout=600)
    assert again.returncode == 0 and f"resumed from step {step}" in again.stdout, again.stdout[-2000:] + again.stderr
    final = ckpt(run)
    assert final["step"] == 400
    assert [d for k in COMPARED for d in state_differences(final.get(k), straight.get(k), k)] == []
    rows = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert rows == sorted(set(rows)) and rows[-1] == 400  # one row per step: the replayed ones replaced
    assert json.loads((run / "metrics.json").read_text())["status"] == "done"


def test_resume_auto_starts_a_run_that_has_no_checkpoint_and_needs_out_dir(tmp_path):
    r = subprocess.run([GANEXP, "train", *RUN, "train.steps=20", "resume=auto"], capture_output=True, text=True,
                       env=ENV, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: resume=auto continues the run in out_dir or starts it there: give out_dir=PATH too"]
    r = subprocess.run([GANEXP, "train", *RUN, "train.steps=20", f"out_dir={tmp_path / 'run'}", "resume=auto"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0 and "resumed from" not in r.stdout, r.stderr
    assert ckpt(tmp_path / "run")["step"] == 20


def test_signals_inside_a_deferred_block_wait_for_its_end():
    """The last checkpoint of a stopped run is written in such a block: a second Ctrl-C or SIGTERM
    cannot cut it short."""
    before = signal.getsignal(signal.SIGINT)
    with deferred() as came:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # no KeyboardInterrupt, no death: both only noted
    assert came == [signal.SIGINT, signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is before


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.slow
def test_a_preempted_submitit_job_saves_is_requeued_and_continues_its_own_folder(straight, tmp_path):
    """hydra/launcher=submitit_local, two jobs; each job's process gets SIGUSR2 (submitit's
    preemption signal) mid-run: it saves, submitit requeues it, and the requeued job continues the
    same folder with resume=auto to a state bitwise equal to the uninterrupted run's."""
    sweep = tmp_path / "sweep"
    p = subprocess.Popen([GANEXP, "train", "-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}",
                          "resume=auto", *[a for a in RUN if not a.startswith("seed=")], "seed=0,1"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    jobs = [sweep / "0_seed-0", sweep / "1_seed-1"]
    end = time.monotonic() + 300
    while not all((j / "stats.jsonl").is_file() and (j / "stats.jsonl").stat().st_size for j in jobs):
        assert p.poll() is None and time.monotonic() < end, "the jobs logged no step"
        time.sleep(0.1)
    controllers = [int(d.name) for d in (sweep / ".submitit").iterdir() if d.name.isdigit()]
    tasks = [t for c in controllers for t in _children(c)]
    assert len(tasks) == 2, (controllers, tasks)
    for t in tasks:
        os.kill(t, signal.SIGUSR2)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0 and "sweep: 2 ran, 0 failed" in out, out[-3000:]
    for job in jobs:
        log = (job / "train.log").read_text()
        assert "interrupted at step" in log and "by SIGUSR2" in log and "resumed from step" in log, log[-2000:]
        assert json.loads((job / "metrics.json").read_text())["status"] == "done"
    final = ckpt(jobs[0])
    assert [d for k in COMPARED for d in state_differences(final.get(k), straight.get(k), k)] == []
