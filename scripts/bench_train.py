"""Training speed of `ganexp train model=dcgan` against a plain PyTorch loop with the same
architecture, batch, optimizer and data, both measured in this one process; and the same for the
2D MLP GAN (`experiment=ring8_mlp loss=nsgan optimizer=adam`: 3x128 MLPs, batch 256).

    python scripts/bench_train.py [--steps 200] [--batch 64] [--device auto] [--dataset digits]
                                  [--variants bf16,compile] [--mlp-steps 1000] [--threads 1]
                                  [--resolutions 32,64] [--batches 64,256] [--width 64]

Prints steps/s, images/s, peak GPU memory and the ratio engine / plain fp32 loop (1.0 = no
overhead from ganexp). Every rate is timed after --warmup steps (compilation, cuDNN autotuning and
the first allocations stay out): a ganexp run logs every --warmup steps and is timed from its first
log point to its last (host syncs there), so the lock, writer, provenance and final checkpoint of
`train()` are not counted. --variants adds rows for `train.amp=bf16`, `train.compile=true`,
`train.channels_last=true`, fused Adam, or all of them at once (`all`). --json writes every row;
--budget-s starts no new table after that many seconds (scripts/gpu_check.sh). --resolutions and --batches repeat the DCGAN rows for each
image size (the packaged digits resized, 1 channel) and global batch; --width sets DCGAN's ngf and
ndf (Radford et al. use 64). --mlp-steps 0 skips the 2D MLP rows. The GPU table of
docs/performance.md comes from

    python scripts/bench_train.py --device cuda --resolutions 32,64 --batches 64,256 --width 64 \
        --variants bf16,compile,channels_last,fused_adam,all --steps 300 --mlp-steps 0
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from rich.console import Console
from rich.table import Table

import ganexp.build.schema  # noqa: F401
from ganexp.build import build_run
from ganexp.engine import train
from ganexp.models import DCGANDiscriminator, DCGANGenerator
from ganexp.models.mlp import MLPDiscriminator, MLPGenerator


FUSED = ["optimizer.g.fused=true", "optimizer.d.fused=true"]
VARIANTS = {"bf16": ["train.amp=bf16"], "compile": ["train.compile=true"], "channels_last": ["train.channels_last=true"],
            "fused_adam": FUSED,
            "all": ["train.amp=bf16", "train.compile=true", "train.channels_last=true", *FUSED]}


#: The 2D MLP GAN of the mode-collapse presets, without their tricks.
MLP = ["experiment=ring8_mlp", "loss=nsgan", "optimizer=adam", "train.batch_size=256"]


def config(args, out_dir, extra=()):
    image = [f"dataset.resolution={args.resolution}"] if args.resolution else []
    width = [f"generator.ngf={args.width}", f"discriminator.ndf={args.width}"] if args.width else []
    setup = MLP if extra == MLP else [f"dataset={args.dataset}", "model=dcgan", "loss=nsgan", "optimizer=adam",
                                      f"train.batch_size={args.batch}", *image, *width, *extra]
    overrides = [*setup, f"device={args.device}", f"train.steps={args.steps}", f"train.log_every={args.log_every}",
                 "train.sample_every=0", "train.ckpt_every=0", "metrics=[]", f"out_dir={out_dir}"]
    with initialize_config_module("ganexp.conf", version_base="1.3"):
        return compose("train", overrides=overrides)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_gan_loop(G, D, draw_real, z_dim: int, B: int, device, steps: int, warmup: int) -> float:
    """Steps/s of the PyTorch DCGAN example's loop: D on real and detached fake, then G on the same fake.
    D's weights are frozen in G's step, as in ganexp's engine (their gradients would be thrown away)."""
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    ones, zeros = torch.ones(B, device=device), torch.zeros(B, device=device)

    def step():
        real = draw_real()
        fake = G(torch.randn(B, z_dim, device=device))
        d_loss = F.binary_cross_entropy_with_logits(D(real), ones) + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        D.requires_grad_(False)
        g_loss = F.binary_cross_entropy_with_logits(D(fake), ones)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        D.requires_grad_(True)

    for _ in range(warmup):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps / (time.perf_counter() - t)


def plain_loop(run, cfg, steps: int) -> float:
    """The plain DCGAN loop on the same data (uint8 on the device), architecture, batch and optimizer."""
    info, device, B, data = run.info, run.device, run.schedule.batch_size, run.data.x
    G = DCGANGenerator(info.channels, info.resolution, run.latent.dim, cfg.generator.ngf).to(device)
    D = DCGANDiscriminator(info.channels, info.resolution, cfg.discriminator.ndf).to(device)
    real = lambda: data[torch.randint(len(data), (B,), device=device)].float() / 127.5 - 1  # noqa: E731
    return timed_gan_loop(G, D, real, run.latent.dim, B, device, steps, warmup=20)


def plain_mlp_loop(run, cfg, steps: int) -> float:
    """A plain loop of the same 2D MLPs, ring data on the device, batch, Adam and non-saturating loss."""
    device, B, data = run.device, run.schedule.batch_size, run.data.x
    G = MLPGenerator((2,), False, cfg.latent.dim, list(cfg.generator.hidden), cfg.generator.act).to(device)
    D = MLPDiscriminator((2,), False, list(cfg.discriminator.hidden), cfg.discriminator.act).to(device)
    real = lambda: data[torch.randint(len(data), (B,), device=device)]  # noqa: E731
    return timed_gan_loop(G, D, real, cfg.latent.dim, B, device, steps, warmup=20)


def engine(args, out_dir, extra=()) -> tuple[float, object, object]:
    """Steps/s of `ganexp train` between its first log point (after the warm-up) and its last."""
    warm = max(1, args.warmup)
    timed = -(-args.steps // warm) * warm  # a whole number of log intervals
    run_args = argparse.Namespace(**{**vars(args), "steps": warm + timed, "log_every": warm})
    cfg = config(run_args, out_dir, extra)
    run = build_run(cfg)
    marks = []
    scalars = run.monitor.scalars

    def mark(step, values):  # the loop synced with the device to read the logged values
        marks.append((step, time.perf_counter()))
        scalars(step, values)

    run.monitor.scalars = mark
    train(run)
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    return (s1 - s0) / (t1 - t0), run, cfg


def peak_mib(device) -> float | None:
    if device.type != "cuda":
        return None
    mib = torch.cuda.max_memory_allocated(device) / 2**20
    torch.cuda.reset_peak_memory_stats(device)
    return mib


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--rounds", type=int, default=3, help="alternate the two loops this often; report the best of each")
    p.add_argument("--variants", default="", help=f"comma-separated extra rows: {', '.join(VARIANTS)}")
    p.add_argument("--mlp-steps", type=int, default=1000, help="steps of the 2D MLP rows (0: skip them)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--resolutions", default="", help="comma-separated DCGAN image sizes (default: the dataset's own)")
    p.add_argument("--batches", default="", help="comma-separated batch sizes (default: --batch)")
    p.add_argument("--width", type=int, default=0, help="DCGAN ngf and ndf (0: the config's, 32)")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first; ganexp logs every this many steps")
    p.add_argument("--json", default="", help="write every row here")
    p.add_argument("--budget-s", type=float, default=0, help="start no new table after this many seconds (0: no limit)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variant {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    resolutions = [int(v) for v in args.resolutions.split(",") if v] or [0]
    batches = [int(v) for v in args.batches.split(",") if v] or [args.batch]
    start, rows = time.perf_counter(), []
    for res in resolutions:
        for batch in batches:
            if args.budget_s and time.perf_counter() - start > args.budget_s:
                print(f"budget of {args.budget_s:.0f} s spent: no table for {res or 'native'} px, batch {batch}")
                continue
            one = argparse.Namespace(**{**vars(args), "resolution": res, "batch": batch})
            rows += measure(one, variants, mlp=args.mlp_steps > 0 and res == resolutions[0] and batch == batches[0])
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1)


def measure(args, variants: list[str], mlp: bool) -> list[dict]:
    """The table of one image size and batch: plain loop, ganexp, its variants (and the MLP rows)."""
    ganexp_rate = plain_rate = 0.0
    extra_rates = dict.fromkeys(variants, 0.0)
    peaks: dict[str, float | None] = {}
    mlp_rate = mlp_plain = 0.0
    mlp_args = argparse.Namespace(**{**vars(args), "steps": args.mlp_steps})
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            rate, run, cfg = engine(args, f"{tmp}/{r}")
            ganexp_rate = max(ganexp_rate, rate)
            peaks["default"] = peak_mib(run.device)
            plain_rate = max(plain_rate, plain_loop(run, cfg, args.steps))
            peaks["plain"] = peak_mib(run.device)
            for v in variants:
                extra_rates[v] = max(extra_rates[v], engine(args, f"{tmp}/{v}{r}", VARIANTS[v])[0])
                peaks[v] = peak_mib(run.device)
            if mlp:
                rate, mrun, mcfg = engine(mlp_args, f"{tmp}/mlp{r}", MLP)
                mlp_rate = max(mlp_rate, rate)
                mlp_plain = max(mlp_plain, plain_mlp_loop(mrun, mcfg, args.mlp_steps))
    where = torch.cuda.get_device_name(run.device) if run.device.type == "cuda" else str(run.device)
    table = Table(title=f"DCGAN {run.info.resolution} px (ngf/ndf {cfg.generator.ngf}) on {args.dataset}, batch "
                        f"{args.batch}, {args.steps} timed steps after {args.warmup}, {where}, best of {args.rounds}")
    for col in ("loop", "steps/s", "images/s", "ratio", "peak MiB"):
        table.add_column(col, justify="right" if col != "loop" else "left")
    B = args.batch
    mib = lambda k: "-" if peaks.get(k) is None else f"{peaks[k]:.0f}"  # noqa: E731
    table.add_row("plain PyTorch loop, fp32 (reference)", f"{plain_rate:.1f}", f"{plain_rate * B:.0f}", "1.00", mib("plain"))
    table.add_row("ganexp train (default)", f"{ganexp_rate:.1f}", f"{ganexp_rate * B:.0f}",
                  f"{ganexp_rate / plain_rate:.2f}", mib("default"))
    for v, rate in extra_rates.items():
        table.add_row(f"ganexp train {' '.join(VARIANTS[v])}", f"{rate:.1f}", f"{rate * B:.0f}", f"{rate / plain_rate:.2f}", mib(v))
    if mlp:
        table.add_row(f"2D MLP GAN (3x128, batch 256, {args.mlp_steps} steps): plain loop", f"{mlp_plain:.1f}",
                      f"{mlp_plain * 256:.0f}", "1.00")
        table.add_row("2D MLP GAN: ganexp train experiment=ring8_mlp loss=nsgan optimizer=adam", f"{mlp_rate:.1f}",
                      f"{mlp_rate * 256:.0f}", f"{mlp_rate / mlp_plain:.2f}")
    Console(width=160).print(table)
    key = {"resolution": run.info.resolution, "batch": B, "device": where}
    return ([key | {"variant": "plain", "steps_per_s": plain_rate, "peak_mib": peaks.get("plain")},
             key | {"variant": "default", "steps_per_s": ganexp_rate, "peak_mib": peaks.get("default")}]
            + [key | {"variant": v, "steps_per_s": r, "peak_mib": peaks.get(v)} for v, r in extra_rates.items()])


if __name__ == "__main__":
    main()
