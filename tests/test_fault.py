"""The fault script as a test: 10 SIGKILLs at random moments of a CPU run, each resumed;
every checkpoint loads, no resume loses more than one interval, the final state is bitwise
the uninterrupted run's (12 process starts: 10 killed, the last resume, the straight run)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fault_kill.py"


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--kills", "10", "--seed", "0", "--dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    rows = [ln.split() for ln in r.stdout.splitlines() if ln[:4].strip().isdigit()]
    assert [int(row[0]) for row in rows] == list(range(10))
    assert "final state bitwise equal" in r.stdout
