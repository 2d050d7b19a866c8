"""`make gpu-kit`: what a bare GPU machine needs to run scripts/gpu_check.sh, in the ignored folder
.whl/ (docs/performance.md, "On a GPU").

The device image has Python 3.12 with torch, torchvision, torchmetrics, tensorboard, rich, numpy,
scipy, scikit-learn, pandas, matplotlib and pytest, but none of ganexp's dependencies below. They are
downloaded as cp312 x86-64 wheels (pure-Python ones fit any platform) in the versions this machine's
.venv tested; the antlr4 runtime exists only as an sdist and is built into a wheel here. The digits
classifier of ``fid_clf`` is carried too (.whl/cache), so the GPU run does not retrain it.
Prints the paths to carry and the one command to run there.

    python scripts/gpu_kit.py [--dest .whl] [--max-mib 64]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: ganexp's runtime dependencies that the device image lacks (torch-fidelity: the Inception metrics).
MISSING = ("hydra-core", "omegaconf", "mlxtend", "torch-fidelity")
SDIST_ONLY = ("antlr4-python3-runtime",)  # hydra's and omegaconf's parser runtime: no wheel on the index
COMMAND = "bash scripts/gpu_check.sh"


def pinned(name: str) -> str:
    """``name==version`` of the version installed here (the one the test suite ran with)."""
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def tree_mib() -> float:
    """What travels besides the kit: tracked files and untracked ones git does not ignore."""
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / p.decode()).stat().st_size for p in out if p and (ROOT / p.decode()).is_file()) / 2**20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dest", default=str(ROOT / ".whl"))
    p.add_argument("--max-mib", type=float, default=64.0)
    args = p.parse_args()
    dest = Path(args.dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    pip("download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
        "--abi", "cp312", "--platform", "manylinux2014_x86_64", "-d", str(dest), *map(pinned, MISSING))
    pip("wheel", "-q", "--no-deps", "-w", str(dest), *map(pinned, SDIST_ONLY))
    cache = Path(os.environ.get("GANEXP_CACHE", "~/.cache/ganexp")).expanduser() / "classifiers"
    clf = sorted(cache.glob("digits-*.pt"))
    if clf:
        (dest / "cache" / "classifiers").mkdir(parents=True)
        for f in clf:
            shutil.copy2(f, dest / "cache" / "classifiers" / f.name)
    wheels = sorted(f.name for f in dest.glob("*.whl"))
    bad = [w for w in wheels if not (w.endswith("-none-any.whl") or "cp312" in w)]
    kit = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file()) / 2**20
    tree = tree_mib()
    print("\n".join(f"  {w}" for w in wheels))
    print(f"kit {kit:.1f} MiB + tree {tree:.1f} MiB = {kit + tree:.1f} MiB (limit {args.max_mib:.0f} MiB)"
          + ("" if clf else "; no digits classifier cached here: the GPU run trains it (~10 s)"))
    if bad or kit + tree > args.max_mib:
        print(f"error: {'wheels not for cp312: ' + ', '.join(bad) if bad else 'over the size limit'}", file=sys.stderr)
        return 1
    print(f'carry: ["{dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}"]')
    print(f"command: {COMMAND}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
