"""build_run: the one place that turns a composed config into the run object. Everything below
receives plain Python values; the engine never sees the config."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganexp.build.factory import (build_dataset, build_evaluators, build_models, latent_prior, optimizer,
                                  reference_data, resolve_auto_norm)
from ganexp.build.hparams import hparams
from ganexp.build.resume import check_resume, keep_launch_values
from ganexp.build.validate import AMP, check_objective, validate
from ganexp.engine import checkpoint, distributed
from ganexp.engine.lr_schedule import LRSchedule
from ganexp.engine.run import Run, Schedule
from ganexp.errors import ConfigError, GanexpError
from ganexp.models.latent import Latent
from ganexp.rundir import folder, provenance
from ganexp.rundir.console import say
from ganexp.rundir.monitor import Monitor, SilentMonitor


def output_dir(cfg: DictConfig) -> Path:
    """The run folder: out_dir (the CLI makes it Hydra's run folder too), else Hydra's run folder."""
    if cfg.out_dir:
        return Path(cfg.out_dir).expanduser()
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        raise ConfigError("out_dir is not set and no Hydra run folder exists; pass out_dir=PATH") from None


def _run_dir(cfg: DictConfig, dist: distributed.Dist | distributed.Single) -> Path:
    """The run folder, refused or prepared by rank 0 alone; under DDP rank 0 tells the others
    (Hydra's time-stamped folder is rank 0's; the other ranks have none)."""
    if not dist.is_main:
        kind, value = dist.broadcast(None)
        if kind == "error":
            raise distributed.FollowsRank0(value)
        return Path(value)
    try:
        out_dir = checkpoint.resolve(cfg.resume).parent.parent if cfg.resume else output_dir(cfg)
        # a file, a read-only folder, a live run or (unless overwrite=true) an earlier run: one line
        for note in folder.prepare_run_dir(out_dir, overwrite=cfg.overwrite, resuming=bool(cfg.resume)):
            say(note)
    except GanexpError as e:
        dist.broadcast(("error", str(e)))
        raise
    dist.broadcast(("ok", str(out_dir)))
    return out_dir


def _sync_bn(cfg: DictConfig, dist: distributed.Dist | distributed.Single, G: nn.Module, D: nn.Module,
             notes: list[str], hooks: tuple = ()) -> tuple[nn.Module, nn.Module]:
    """train.sync_bn=true: batch norm over the global batch (SyncBatchNorm, same state dict as BatchNorm)."""
    if not cfg.train.sync_bn:
        return G, D
    if dist.world == 1:
        notes.append("note: train.sync_bn=true has no effect on one process (batch norm already sees the whole batch)")
        return G, D
    if dist.device.type != "cuda":
        raise ConfigError("train.sync_bn=true needs CUDA (SyncBatchNorm has no CPU kernel); use device=cuda or drop it")
    penalties = [h.name if h.name != "loss" else f"the {type(h).__name__} loss" for h in hooks if h.double_backward]
    if penalties:
        raise ConfigError(f"train.sync_bn=true cannot train with {', '.join(penalties)}: a gradient penalty needs a double "
                          f"backward, which SyncBatchNorm lacks; drop train.sync_bn or the penalty")
    return distributed.convert_sync_bn(G), distributed.convert_sync_bn(D)


#: Below this many parameters (G and D together) a CPU run takes one thread: a 2D MLP GAN's small
#: matrix products lose more to thread hand-offs than they gain (docs/performance.md, "CPU defaults").
SMALL_MODEL = 200_000


def _threads(threads: int | None, device: torch.device, G: nn.Module, D: nn.Module) -> None:
    """train.threads, or null: one thread for a small model on the CPU unless OMP_NUM_THREADS says otherwise."""
    if threads is not None:
        torch.set_num_threads(threads)
    elif device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        if sum(p.numel() for m in (G, D) for p in m.parameters()) < SMALL_MODEL:
            torch.set_num_threads(1)


def _channels_last(value: bool | None, device: torch.device) -> bool:
    """train.channels_last, or null: on the CPU (measured faster for the conv models), off on CUDA (not yet measured)."""
    return value if value is not None else device.type == "cpu"


def build_run(cfg: DictConfig) -> Run:
    """The run ``cfg`` describes: data on its device, G and D with their tricks, the optimizers,
    the metrics, the run folder (prepared and checked) and, with ``resume=``, the checkpoint."""
    validate(cfg)
    dist = distributed.setup(cfg.device)  # Single on one process
    device = dist.device
    dist.local_batch(cfg.train.batch_size)  # one line when the global batch does not split over the ranks
    torch.manual_seed(cfg.seed)
    if cfg.resume == "auto":  # continue the run in its folder when it saved one, else start it there
        last = output_dir(cfg) / "ckpt" / "last.pt"
        cfg.resume = str(last) if last.is_file() else None
    state = checkpoint.load(cfg.resume) if cfg.resume else None
    notes = []
    resolve_auto_norm(cfg)  # before comparing with a checkpoint, which records the resolved value
    if state is not None:
        notes += keep_launch_values(cfg, state["config"])
        check_resume(cfg, state["config"])
    out_dir = _run_dir(cfg, dist)

    data = build_dataset(cfg.dataset).to(device)
    info = data.info
    if data.full is not None:
        notes.append(f"note: training on {len(data):,} of the {len(data.full):,} samples of '{info.name}' "
                     f"(dataset.subset); metrics compare against all {len(data.full):,}")
    G, D, loss, tricks = build_models(cfg, info, device)
    G, D = _sync_bn(cfg, dist, G, D, notes, (loss, *tricks))
    _threads(cfg.train.threads, device, G, D)
    if _channels_last(cfg.train.channels_last, device) and info.is_image:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    if device.type == "cuda":  # process-wide switches: this process trains one run
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(cfg.train.tf32)
    opt_g = optimizer(cfg.optimizer.g, G.parameters(), "g")
    opt_d = optimizer(cfg.optimizer.d, D.parameters(), "d")
    lr_schedule = None
    if cfg.optimizer.schedule != "constant" or cfg.optimizer.warmup_steps:
        lr_schedule = LRSchedule(cfg.optimizer.schedule, cfg.optimizer.decay_steps, cfg.optimizer.warmup_steps)
        lr_schedule.attach(opt_g, opt_d)
    prior = latent_prior(cfg.latent.prior, [loss, *tricks])
    latent = Latent(cfg.latent.dim, prior, getattr(G, "num_classes", 0), device)
    sch = Schedule(cfg.train.steps, cfg.train.batch_size, cfg.optimizer.d_steps, cfg.optimizer.g_steps,
                   cfg.train.log_every, cfg.train.sample_every, cfg.train.ckpt_every, cfg.eval.every, ranks=dist.world)
    evaluators, best = build_evaluators(cfg, reference_data(data), device, D)
    notes += [ev.note for ev in evaluators if getattr(ev, "note", None)]
    notes += [f"note: tricks.{k} settings are ignored: {k} is not in tricks=[...]"
              for k, v in (cfg.tricks or {}).items() if "_target_" not in v]
    check_objective(cfg.optimized_metric, evaluators)
    run = Run(
        data=data, G=G, D=D, loss=loss, tricks=tricks, opt_g=opt_g, opt_d=opt_d, latent=latent, schedule=sch,
        fixed_z=torch.empty(0), fixed_y=None, out_dir=out_dir, device=device, seed=cfg.seed,
        monitor=(Monitor if dist.is_main else SilentMonitor)(out_dir, sch.steps, sch.log_every),
        config=OmegaConf.to_container(cfg, resolve=True), hparams=hparams(cfg), resume_state=state,
        evaluators=evaluators, best_metric=best, amp=AMP[cfg.train.amp], compile=cfg.train.compile,
        compile_mode=cfg.train.compile_mode, notes=notes,
        provenance=provenance.collect(device) | {"resumed_from_step": int(state["step"]) if state else 0}
        | ({"ranks": dist.world} if dist.world > 1 else {}),
        lr_schedule=lr_schedule, clip_grad_norm=cfg.optimizer.clip_grad_norm, dist=dist,
    )
    ctx = run.setup_context()  # what the hooks may see of the run; their notes join the run's
    for h in [loss, *tricks]:
        h.setup(ctx)
    if state is not None:
        run.fixed_z = state["fixed_z"].to(device)
        run.fixed_y = None if state["fixed_y"] is None else state["fixed_y"].to(device)
    else:
        run.fixed_z, run.fixed_y = latent.fixed(cfg.train.num_fixed, cfg.seed)
    # every rank built the same run from the same seed; from here each draws its share (one process: no-op)
    dist.start_streams(cfg.seed)
    dist.shard(data, cfg.seed, int(state["step"]) if state else 0)
    return run
