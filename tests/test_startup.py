"""Start-up (issue 22): `ganexp --help` loads neither torch nor Hydra, and `ganexp train --cfg job`
composes the config without torch. The times are in scripts/bench_startup.py and docs/performance.md."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import sys, contextlib, io; sys.argv = ['ganexp', *sys.argv[1:]]\n"
         "from ganexp.cli.main import main\n"
         "out = io.StringIO()\n"
         "with contextlib.redirect_stdout(out):\n"
         "    try:\n"
         "        main()\n"
         "    except SystemExit as e:\n"
         "        assert not e.code, e.code  # Hydra's --help exits 0\n"
         "print(sorted(m for m in ('torch', 'hydra', 'omegaconf', 'numpy') if m in sys.modules), len(out.getvalue()))")


def loaded(*args: str) -> tuple[list[str], int]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    mods, printed = done.stdout.strip().rsplit("] ", 1)
    return eval(mods + "]"), int(printed)  # noqa: S307  (our own probe's output)


def test_help_imports_no_torch_and_no_hydra():
    mods, printed = loaded("--help")
    assert mods == [] and printed > 100  # the usage text, with nothing heavy behind it


@pytest.mark.parametrize("args", [("train", "--cfg", "job"), ("train", "--help")])
def test_train_config_needs_hydra_not_torch(args):
    mods, printed = loaded(*args)
    assert "torch" not in mods and "hydra" in mods and printed > 100
