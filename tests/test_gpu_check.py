"""The GPU check (scripts/gpu_check.sh) cannot rot between GPU loans: its dry run goes through the
same steps on the CPU with tiny sizes, from a fresh target folder holding the kit's wheels only,
under a Python that lacks what the GPU image lacks (scripts/device_like_python.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_passes_from_the_kit_alone(tmp_path):
    kit = tmp_path / "whl"
    made = subprocess.run([sys.executable, "scripts/gpu_kit.py", "--dest", str(kit)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    assert "command: bash scripts/gpu_check.sh" in made.stdout
    names = {p.name.split("-")[0] for p in kit.glob("*.whl")}
    assert names == {"antlr4_python3_runtime", "hydra_core", "mlxtend", "omegaconf", "torch_fidelity"}

    sys.path.insert(0, str(ROOT / "scripts"))
    from device_like_python import make

    python = make(tmp_path / "device")
    assert subprocess.run([str(python), "-c", "import hydra"], cwd=tmp_path, capture_output=True).returncode != 0
    out = tmp_path / "out"
    env = os.environ | {"OUT": str(out), "GPU_CHECK_PYTHON": str(python), "GPU_CHECK_WHEELS": str(kit),
                        "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=2400)
    report = (out / "report.md").read_text()
    assert done.returncode == 0, report + done.stdout[-3000:]
    for name in ("install", "env", "tests", "bench", "digits", "torchrun"):
        assert f"| {name} | ok |" in report, report
    rows = json.loads((out / "bench.json").read_text())
    assert {r["variant"] for r in rows} >= {"plain", "default", "bf16"} and all(r["steps_per_s"] > 0 for r in rows)
    assert "fid_clf" in (out / "digits.log").read_text() and "status done step 12" in (out / "torchrun.log").read_text()
    # at most 8 files come back from the GPU machine
    assert len([p for p in out.rglob("*") if p.is_file()]) <= 8
