"""Mode-collapse benchmark: train presets over several seeds and score them with the VEEGAN/PacGAN
protocol (2D: modes captured, % high-quality samples, reverse KL on 2,500 samples; Stacked MNIST:
modes of 1,000 and KL over 26,000), beside the published rows for the same setting.

    python scripts/bench_modes.py [--presets ring8_pacgan,grid25_pacgan] [--seeds 5] [--markdown]
    python scripts/bench_modes.py --presets ring8_pacgan_paper:20000 --seeds 2   # cut a paper preset to 20,000 steps
    python scripts/bench_modes.py --presets ring8_pacgan,grid25_pacgan@2           # @N: this preset on N seeds only
    python scripts/bench_modes.py --presets stacked_mnist_best@1 --first-seed 2     # seed 2 alone (split seeds over jobs)

Runs are sequential, one torch thread each, on the CPU (`--device` to change); wall time is the
training call (evaluation at the last step included), per run.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import date

import torch
from hydra import compose, initialize_config_module
from rich.console import Console
from rich.table import Table

import ganexp.build.schema  # noqa: F401
from ganexp.build import build_run
from ganexp.engine import train

#: Published rows per setting: (method, modes, high-quality %, reverse KL); None where not reported.
PUBLISHED = {
    "ring": [("GAN (VEEGAN Table 1)", 1.0, 99.3, None), ("Unrolled GAN (VEEGAN Table 1)", 7.6, 35.6, None),
             ("VEEGAN (VEEGAN Table 1)", 8.0, 52.9, None), ("PacGAN4 (PacGAN Table 1)", 7.8, 95.9, 0.07)],
    "grid": [("VEEGAN (VEEGAN Table 1)", 24.6, 40.0, None), ("PacGAN4 (PacGAN Table 1)", 24.8, 93.6, 0.04)],
    "stacked": [("DCGAN (PacGAN Table 3)", 99.0, None, 3.4), ("PacDCGAN2 (PacGAN Table 3)", 1000.0, None, 0.06)],
}
DEFAULT = "ring8_pacgan,grid25_pacgan"


def setting(cfg) -> str:
    name = cfg.dataset.name
    return "ring" if name.startswith("ring") else "grid" if name.startswith("grid") else "stacked"


def run_once(preset: str, steps: int | None, seed: int, device: str, out: str) -> tuple[dict, float, object]:
    with initialize_config_module("ganexp.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={preset}", f"seed={seed}", f"device={device}", f"out_dir={out}",
                                          "train.sample_every=0", "train.ckpt_every=0", "eval.best=null",
                                          *([f"train.steps={steps}"] if steps else [])])
    stacked = setting(cfg) == "stacked"
    cfg.eval.metrics = {k: v for k, v in cfg.eval.metrics.items() if k == ("stacked_modes" if stacked else "modes")}
    cfg.eval.every = cfg.train.steps  # score once, at the end
    cfg.train.log_every = min(cfg.train.log_every, cfg.train.steps)
    run = build_run(cfg)
    t = time.perf_counter()
    final = train(run)
    wall = time.perf_counter() - t
    if stacked:
        return {"modes": final["metrics/stacked_modes"], "hq": None, "kl": final["metrics/stacked_modes_kl"]}, wall, cfg
    return {"modes": final["metrics/modes"], "hq": final["metrics/modes_hq_percent"],
            "kl": final["metrics/modes_reverse_kl"]}, wall, cfg


def mean_std(xs: list[float | None], fmt: str) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{format(statistics.mean(xs), fmt)} ± {format(sd, fmt)}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default=DEFAULT,
                   help="comma-separated experiment presets; name:steps cuts a run's length, name@N runs N seeds")
    p.add_argument("--seeds", type=int, default=5, help="N seeds per preset: first-seed .. first-seed+N-1")
    p.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown (for docs/experiments.md)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=200)
    rows, settings = [], []
    for item in args.presets.split(","):
        item, _, n = item.partition("@")
        preset, _, steps = item.partition(":")
        seeds = int(n) if n else args.seeds
        results, walls, cfg = [], [], None
        for seed in range(args.first_seed, args.first_seed + seeds):
            with tempfile.TemporaryDirectory() as tmp:
                r, wall, cfg = run_once(preset, int(steps) if steps else None, seed, args.device, tmp)
            results.append(r)
            walls.append(wall)
            hq = "" if r["hq"] is None else f", HQ {r['hq']:.1f}%"
            console.print(f"{preset} seed {seed}: modes {r['modes']:.0f}{hq}, KL {r['kl']:.3f}, {wall:.0f} s")
        s = setting(cfg)
        settings.append(s) if s not in settings else None
        first = f", from seed {args.first_seed}" if args.first_seed else ""
        rows.append((f"{preset} ({cfg.train.steps} steps, {seeds} seed{'s' if seeds > 1 else ''}{first})", mean_std([r["modes"] for r in results], ".1f"),
                     mean_std([r["hq"] for r in results], ".1f"), mean_std([r["kl"] for r in results], ".3f"),
                     f"{statistics.mean(walls):.0f}", f"{min(r['modes'] for r in results):.0f}"))
    for s in settings:
        rows += [(f"published, {s}: {m}", f"{mo:g}", "-" if hq is None else f"{hq:g}", "-" if kl is None else f"{kl:g}", "-", "-")
                 for m, mo, hq, kl in PUBLISHED[s]]
    head = ("run", "modes", "high quality %", "reverse KL", "wall s/run", "fewest modes")
    machine = f"{platform.node() or 'this machine'}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)"
    table = Table(title=f"Mode coverage, {date.today()}, {machine}")
    for h in head:
        table.add_column(h, justify="left" if h == "run" else "right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    if args.markdown:
        print(f"\nMeasured {date.today()} on {machine}:\n")
        print("| " + " | ".join(head) + " |")
        print("|" + " --- |" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
