"""How long `ganexp` takes before it does anything: the median wall time of each command over
--runs fresh processes, against the goals of issue 22, and whether it loaded torch.

    python scripts/bench_startup.py [--runs 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

#: (command arguments, goal in seconds or None)
COMMANDS = [(["--help"], 0.5), (["compare", "--help"], None), (["train", "--help"], None),
            (["train", "--cfg", "job"], 2.0), (["train", "--cfg", "job", "model=resnet", "loss=hinge"], 2.0)]
PROBE = ("import sys; sys.argv = ['ganexp', *sys.argv[1:]]\n"
         "import contextlib, io\nfrom ganexp.cli.main import main\n"
         "with contextlib.redirect_stdout(io.StringIO()):\n"
         "    try:\n        main()\n    except SystemExit:\n        pass\n"
         "print('torch' in sys.modules, 'hydra' in sys.modules)")


def timed(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ganexp", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def loads(args: list[str]) -> tuple[bool, bool]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True).stdout.split()
    return out[-2] == "True", out[-1] == "True"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    ref = statistics.median(timed_import() for _ in range(args.runs))
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.1f}; median of {args.runs} fresh processes each")
    print(f"{'command':48} {'median s':>9} {'goal s':>7} {'torch':>6} {'hydra':>6}")
    missed = 0
    for cmd, goal in COMMANDS:
        s = statistics.median(timed(cmd) for _ in range(args.runs))
        torch_, hydra_ = loads(cmd)
        ok = goal is None or s <= goal
        missed += not ok
        print(f"{'ganexp ' + ' '.join(cmd):48} {s:9.2f} {goal if goal else '-':>7} {'yes' if torch_ else 'no':>6} "
              f"{'yes' if hydra_ else 'no':>6}{'' if ok else '  MISSED'}")
    label = 'python -c "import torch" (for scale)'
    print(f"{label:48} {ref:9.2f}")
    return 1 if missed else 0


def timed_import() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())
