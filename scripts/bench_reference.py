"""Whole-process wall time of `ganexp train` against pytorch/examples' dcgan/main.py on the same
architecture and batch (DCGAN 64 px, ngf = ndf = 64, batch 64, 48 steps), in interleaved pairs.

The reference is not part of ganexp: fetch dcgan/main.py from the public pytorch/examples repository
and pass its path (default outputs/ref/dcgan_main.py, an ignored folder). It runs as

    python dcgan_main.py --dataset fake --niter 3 --batchSize 64 --imageSize 64 --ngf 64 --ndf 64 \
        --workers 2 --outf DIR --manualSeed 0

(FakeData: 1,000 random 3 x 64 x 64 images, so 16 steps per epoch and 48 in all; it prints every step,
saves a grid and both models each epoch). ganexp trains on 3-channel stacked digits with the same
sample and checkpoint rhythm. Prints each pair's times and ratio (ganexp / reference), the median
ratio, and the load average before and after.

    python scripts/bench_reference.py [--reference PATH] [--pairs 3] [--extra OVERRIDES...]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GANEXP = ["dataset=stacked_mnist", "dataset.resolution=64", "dataset.num_samples=1024", "generator.ngf=64",
          "discriminator.ndf=64", "train.batch_size=64", "train.steps=48", "train.log_every=16",
          "train.sample_every=16", "train.ckpt_every=16", "metrics=[]"]


def wall(cmd: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", default=str(ROOT / "outputs" / "ref" / "dcgan_main.py"))
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="the reference's --niter (16 steps each); ganexp trains as many steps")
    p.add_argument("--extra", nargs="*", default=[], help="more ganexp overrides (e.g. train.channels_last=false)")
    args = p.parse_args()
    ref = Path(args.reference)
    if not ref.is_file():
        print(f"error: no reference script at {ref}; fetch dcgan/main.py of pytorch/examples there "
              f"(docs/performance.md, 'Against pytorch/examples')", file=sys.stderr)
        return 2
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            order = ("ref", "ganexp") if i % 2 == 0 else ("ganexp", "ref")  # alternate who goes first
            t = {}
            for who in order:
                out = Path(tmp) / f"{who}{i}"
                out.mkdir()
                if who == "ref":
                    cmd = [sys.executable, str(ref.resolve()), "--dataset", "fake", "--niter", str(args.epochs), "--batchSize", "64",
                           "--imageSize", "64", "--ngf", "64", "--ndf", "64", "--workers", "2", "--outf", str(out),
                           "--manualSeed", "0"]
                else:
                    cmd = [sys.executable, "-m", "ganexp", "train", *GANEXP, f"train.steps={16 * args.epochs}", *args.extra,
                           f"out_dir={out}/run"]
                t[who] = wall(cmd, ROOT)
            rows.append(t)
            print(f"pair {i + 1}: reference {t['ref']:.1f} s, ganexp {t['ganexp']:.1f} s, ratio {t['ganexp'] / t['ref']:.2f}",
                  flush=True)
    ratio = statistics.median(r["ganexp"] / r["ref"] for r in rows)
    print(f"median ratio ganexp / reference: {ratio:.2f}  (goal <= 0.80; {os.cpu_count()} cores, load average "
          f"{load0[0]:.1f} before, {os.getloadavg()[0]:.1f} after)")
    print("ganexp: ganexp train " + " ".join([*GANEXP, f"train.steps={16 * args.epochs}", *args.extra]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
