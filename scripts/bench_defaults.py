"""A/B pairs behind ganexp's CPU defaults (docs/performance.md, "CPU defaults"): each case builds
run A and run B in this process, alternately, --pairs times, times --steps training steps of each
after --warmup (the engine's own step function: no logging or checkpoints), and prints the median
B/A speed ratio with every pair's, and the load average. The machine is shared: read the spread.

    python scripts/bench_defaults.py [--pairs 3] [--steps 20] [--warmup 5] [--cases channels_last_dcgan,...]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from hydra import compose, initialize_config_module

import ganexp.build.schema  # noqa: F401
from ganexp.build import build_run
from ganexp.engine.step import Players, step
from ganexp.hooks import HookSet

DCGAN64 = ["dataset=stacked_mnist", "dataset.resolution=64", "dataset.num_samples=1024", "generator.ngf=64",
           "discriminator.ndf=64", "train.batch_size=64"]
DCGAN32 = ["dataset.resolution=32", "train.batch_size=64"]  # the packaged digits, ngf = ndf = 32
RESNET32 = ["model=resnet", "dataset.resolution=32", "train.batch_size=64"]
MLP = ["experiment=ring8_mlp", "loss=nsgan", "optimizer=adam", "train.batch_size=256"]
#: name -> (base overrides, A, B, threads A, threads B)
CASES = {
    "channels_last_dcgan64": (DCGAN64, ["train.channels_last=false"], ["train.channels_last=true"], 0, 0),
    "channels_last_dcgan32": (DCGAN32, ["train.channels_last=false"], ["train.channels_last=true"], 0, 0),
    "channels_last_resnet32": (RESNET32, ["train.channels_last=false"], ["train.channels_last=true"], 0, 0),
    "threads_mlp": (MLP, [], [], 1, 2),
    "threads_dcgan32": (DCGAN32, [], [], 1, 2),
    "compile_dcgan32": (DCGAN32, [], ["train.compile=true"], 0, 0),
}


def rate(overrides: list[str], threads: int, steps: int, warmup: int, tmp: str) -> float:
    torch.set_num_threads(threads or os.cpu_count())
    with initialize_config_module("ganexp.conf", version_base="1.3"):
        threads_key = [f"train.threads={threads}"] if threads else []  # else train.threads=null decides
        cfg = compose("train", overrides=[*overrides, *threads_key, "device=cpu", "metrics=[]", f"out_dir={tmp}"])
    run = build_run(cfg)
    hooks = HookSet([run.loss, *run.tricks])
    players = Players(run)
    for i in range(warmup):
        step(run, hooks, i, hooks.allows_fake_reuse, players)
    t = time.perf_counter()
    for i in range(steps):
        step(run, hooks, warmup + i, hooks.allows_fake_reuse, players)
    return steps / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--cases", default=",".join(CASES))
    args = p.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    for name in args.cases.split(","):
        base, a, b, ta, tb = CASES[name]
        ratios = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.pairs):
                first, second = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))  # alternate the order
                r1 = rate([*base, *first[0]], first[1], args.steps, args.warmup, f"{tmp}/{i}x")
                r2 = rate([*base, *second[0]], second[1], args.steps, args.warmup, f"{tmp}/{i}y")
                ra, rb = (r1, r2) if i % 2 == 0 else (r2, r1)
                ratios.append(rb / ra)
                print(f"  {name} pair {i + 1}: A {ra:.2f} steps/s, B {rb:.2f} steps/s, B/A {rb / ra:.2f}", flush=True)
        print(f"{name}: B/A median {statistics.median(ratios):.2f} (pairs {', '.join(f'{r:.2f}' for r in ratios)}); "
              f"A = {' '.join(a) or 'base'}{f' {ta} thread(s)' if ta else ''}, B = {' '.join(b) or 'base'}"
              f"{f' {tb} thread(s)' if tb else ''}; load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
