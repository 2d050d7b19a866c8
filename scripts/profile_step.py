"""Where the CPU time of one ganexp training step goes (torch.profiler), for docs/performance.md.

    python scripts/profile_step.py [--steps 5] [--warmup 3] [--threads 0] [overrides...]

Default overrides: DCGAN 64 px, ngf = ndf = 64, batch 64 on 3-channel stacked digits (the pytorch/examples
comparison of scripts/bench_reference.py). Prints the ops by self CPU time and the share of the step
spent in G's and D's forward, backward and the optimizers.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
from hydra import compose, initialize_config_module
from torch.profiler import ProfilerActivity, profile, record_function

import ganexp.build.schema  # noqa: F401
from ganexp.build import build_run
from ganexp.engine.step import Players, step
from ganexp.hooks import HookSet

DEFAULT = ["dataset=stacked_mnist", "dataset.resolution=64", "dataset.num_samples=1024", "generator.ngf=64",
           "discriminator.ndf=64", "train.batch_size=64", "metrics=[]"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--rows", type=int, default=18)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp, initialize_config_module("ganexp.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*DEFAULT, "device=cpu", *args.overrides, f"out_dir={tmp}/run"])
        run = build_run(cfg)
        hooks = HookSet([run.loss, *run.tricks])
        players = Players(run)
        for i in range(args.warmup):
            step(run, hooks, i, hooks.allows_fake_reuse, players)
        t = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(args.steps):
                with record_function("ganexp_step"):
                    step(run, hooks, i, hooks.allows_fake_reuse, players)
        wall = (time.perf_counter() - t) / args.steps
    print(f"{torch.get_num_threads()} threads, {wall * 1e3:.0f} ms per step under the profiler "
          f"({' '.join([*DEFAULT, *args.overrides])})")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=48))


if __name__ == "__main__":
    main()
