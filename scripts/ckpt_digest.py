"""Does a refactoring change what ganexp trains? Run fixed-seed CPU runs through the `ganexp`
command (so the script works on any layout of the package) and fingerprint every tensor of each
run's ``ckpt/last.pt``; then compare two such fingerprint files tensor by tensor.

    python scripts/ckpt_digest.py run --out before.json      # on the old tree
    python scripts/ckpt_digest.py run --out after.json       # on the new tree
    python scripts/ckpt_digest.py compare before.json after.json

Each run uses one torch thread (OMP_NUM_THREADS=1), so the arithmetic is the same from run to run.
The comparison prints a table (run, tensors, equal, differing) and exits 1 when anything differs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import shutil
import time
from pathlib import Path

#: name -> overrides of `ganexp train`; the three runs of issue 19's "behaviour is unchanged".
RUNS = {
    "default": [],
    "ring8_pacgan_500": ["experiment=ring8_pacgan", "train.steps=500"],
    "conditional_ema_r1": ["conditional=true", "tricks=[ema,r1]", "train.steps=500"],
}
#: What a checkpoint holds that is not training state: the wall time it took.
SKIP = {"elapsed"}


def _digest(obj, prefix: str, out: dict[str, str]) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        out[prefix] = h.hexdigest()[:16]
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            if prefix == "" and k in SKIP:
                continue
            _digest(obj[k], f"{prefix}/{k}" if prefix else str(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _digest(v, f"{prefix}[{i}]", out)
    else:
        out[prefix] = hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def fingerprint(path: Path) -> dict[str, str]:
    import torch

    out: dict[str, str] = {}
    _digest(torch.load(path, map_location="cpu", weights_only=True), "", out)
    return out


def run(args) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = {}
    work = Path(args.work)  # a fixed place: the run folder's path is part of the stored config
    for name, overrides in RUNS.items():
        if args.only and name not in args.only:
            continue
        out_dir = work / name
        shutil.rmtree(out_dir, ignore_errors=True)
        cmd = [sys.executable, "-m", "ganexp", "train", "device=cpu", "seed=0", f"out_dir={out_dir}", *overrides]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
            print(f"{name}: ganexp train failed ({done.returncode})", file=sys.stderr)
            return 2
        result[name] = fingerprint(out_dir / "ckpt" / "last.pt")
        print(f"{name}: {len(result[name])} entries, {time.perf_counter() - t0:.0f} s", flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True))
    print(f"wrote {args.out}")
    return 0


def compare(args) -> int:
    a, b = (json.loads(Path(p).read_text()) for p in (args.before, args.after))
    rows, bad = [], 0
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name, {}), b.get(name, {})
        keys = sorted(set(x) | set(y))
        diff = [k for k in keys if x.get(k) != y.get(k)]
        bad += len(diff)
        rows.append((name, len(keys), len(keys) - len(diff), len(diff), ", ".join(diff[:4])))
    w = max(len(r[0]) for r in rows)
    print(f"{'run':<{w}}  entries  equal  differ  first differing")
    for name, n, eq, d, first in rows:
        print(f"{name:<{w}}  {n:>7}  {eq:>5}  {d:>6}  {first}")
    print("bitwise equal" if not bad else f"{bad} entries differ")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train the runs and write their fingerprints")
    r.add_argument("--out", required=True)
    r.add_argument("--work", default="/tmp/ganexp-ckpt-digest", help="where the runs go (emptied first)")
    r.add_argument("--only", nargs="*", choices=list(RUNS), help="a subset of the runs")
    c = sub.add_parser("compare", help="compare two fingerprint files")
    c.add_argument("before")
    c.add_argument("after")
    args = p.parse_args()
    return run(args) if args.cmd == "run" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
