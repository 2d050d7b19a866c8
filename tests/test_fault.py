"""The fault script as a test: 10 kills at random moments of a CPU run (SIGKILL, SIGTERM and
Slurm's warning signals SIGUSR1/SIGUSR2), each resumed; every checkpoint loads, a SIGKILL loses
at most one interval, a graceful stop saves the step it stopped at, and the final state is
bitwise the uninterrupted run's (12 process starts)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fault_kill.py"


@pytest.mark.slow
def test_kills_and_stop_signals_at_random_moments_lose_nothing(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--kills", "10", "--seed", "0", "--dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    rows = [ln.split() for ln in r.stdout.splitlines() if ln[:4].strip().isdigit()]
    assert [int(row[0]) for row in rows] == list(range(10))
    assert [row[1] for row in rows] == ["KILL", "TERM", "USR1", "USR2"] * 2 + ["KILL", "TERM"]
    assert "final state bitwise equal" in r.stdout
