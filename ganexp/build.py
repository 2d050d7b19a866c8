"""build_run: the one place that turns a composed config into objects (the only caller
of hydra.utils.instantiate). Everything below receives plain Python values."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganexp import checkpoint, distributed, files, provenance
from ganexp.data import DataInfo
from ganexp.errors import ConfigError, GanexpError
from ganexp.hooks import Hook
from ganexp.losses import Loss
from ganexp.lr_schedule import KINDS, LRSchedule
from ganexp.monitor import Monitor, SilentMonitor, say
from ganexp.run import Run, Schedule
from ganexp.sampling import Latent


def _make(node: DictConfig | dict, what: str, **kwargs: Any) -> Any:
    """instantiate with plain containers, turning import and argument errors into one line."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except GanexpError:
        raise
    except Exception as e:  # Hydra wraps the real cause; show the innermost message
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, GanexpError):
            raise cause from None
        msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise ConfigError(f"cannot build {what}: {msg}") from None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available; use device=cpu or device=auto")
    return dev


#: train.amp -> autocast dtype.
AMP = {"none": None, "bf16": torch.bfloat16}


def validate(cfg: DictConfig) -> None:
    """Range checks the typed schema cannot express; each failure is one line naming the key."""
    checks = [
        (cfg.optimizer.g.lr > 0, f"optimizer.g.lr must be > 0, got {cfg.optimizer.g.lr}"),
        (cfg.optimizer.d.lr > 0, f"optimizer.d.lr must be > 0, got {cfg.optimizer.d.lr}"),
        (cfg.optimizer.d_steps >= 1, f"optimizer.d_steps must be >= 1, got {cfg.optimizer.d_steps}"),
        (cfg.optimizer.g_steps >= 1, f"optimizer.g_steps must be >= 1, got {cfg.optimizer.g_steps}"),
        (cfg.optimizer.schedule in KINDS, f"optimizer.schedule must be one of {', '.join(KINDS)}, got '{cfg.optimizer.schedule}'"),
        (cfg.optimizer.warmup_steps >= 0, f"optimizer.warmup_steps must be >= 0, got {cfg.optimizer.warmup_steps}"),
        (cfg.optimizer.schedule != "warmup" or cfg.optimizer.warmup_steps > 0,
         "optimizer.schedule=warmup needs optimizer.warmup_steps > 0"),
        (cfg.optimizer.schedule not in ("linear", "cosine") or cfg.optimizer.decay_steps > cfg.optimizer.warmup_steps,
         f"optimizer.decay_steps ({cfg.optimizer.decay_steps}) must be > optimizer.warmup_steps ({cfg.optimizer.warmup_steps})"),
        (cfg.optimizer.clip_grad_norm is None or cfg.optimizer.clip_grad_norm > 0,
         f"optimizer.clip_grad_norm must be > 0 or null, got {cfg.optimizer.clip_grad_norm}"),
        (cfg.train.steps >= 0, f"train.steps must be >= 0, got {cfg.train.steps}"),
        (cfg.train.batch_size >= 1, f"train.batch_size must be >= 1, got {cfg.train.batch_size}"),
        (cfg.train.log_every >= 1, f"train.log_every must be >= 1, got {cfg.train.log_every}"),
        (cfg.train.sample_every >= 0, f"train.sample_every must be >= 0, got {cfg.train.sample_every}"),
        (cfg.train.ckpt_every >= 0, f"train.ckpt_every must be >= 0, got {cfg.train.ckpt_every}"),
        (cfg.train.num_fixed >= 1, f"train.num_fixed must be >= 1, got {cfg.train.num_fixed}"),
        (cfg.latent.dim >= 1, f"latent.dim must be >= 1, got {cfg.latent.dim}"),
        (cfg.optimized_mode in ("min", "max"), f"optimized_mode must be min or max, got '{cfg.optimized_mode}'"),
        (cfg.train.amp in AMP, f"train.amp must be one of {', '.join(AMP)}, got '{cfg.train.amp}'"
                               + ("; fp16 needs loss scaling that ganexp does not do: use bf16" if cfg.train.amp == "fp16" else "")),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def _model_kwargs(node: DictConfig, info: DataInfo, num_classes: int) -> dict[str, Any]:
    """The dataset-dependent arguments a model class accepts (shape, channels, resolution, classes)."""
    try:
        params = inspect.signature(get_class(node._target_)).parameters
    except Exception as e:
        raise ConfigError(f"cannot find model class {node._target_}: {e}") from None
    offered = {"shape": list(info.shape), "kind": info.kind, "channels": info.channels,
               "resolution": info.resolution, "num_classes": num_classes}
    if info.kind == "points" and "channels" in params and "shape" not in params:
        raise ConfigError(f"{node._target_.rsplit('.', 1)[-1]} is an image model and '{info.name}' is 2D points; use model=mlp")
    return {k: v for k, v in offered.items() if k in params}


def resolve_auto_norm(cfg: DictConfig) -> None:
    """``discriminator.norm: auto`` becomes ``layer`` for losses with a per-sample gradient penalty
    (WGAN-GP drops batch norm from the critic, Gulrajani et al. 2017, Sec. 4) and ``batch`` otherwise;
    written into the config, so the run folder and checkpoints record what was built."""
    if cfg.discriminator.get("norm") == "auto":
        try:
            per_sample = getattr(get_class(cfg.loss._target_), "per_sample_penalty", False)
        except Exception as e:
            raise ConfigError(f"cannot find loss class {cfg.loss.get('_target_')}: {e}") from None
        cfg.discriminator.norm = "layer" if per_sample else "batch"


def build_models(cfg: DictConfig, info: DataInfo, device: torch.device) -> tuple[nn.Module, nn.Module, Loss, list[Hook]]:
    """G, D, the loss and the tricks, with architecture tricks applied (also used by sample/eval)."""
    resolve_auto_norm(cfg)
    num_classes = info.num_classes if cfg.conditional else 0
    if cfg.conditional and not num_classes:
        raise ConfigError(f"conditional=true needs a labelled dataset; '{info.name}' has no classes")
    G = _make(cfg.generator, "generator", **_model_kwargs(cfg.generator, info, num_classes))
    D = _make(cfg.discriminator, "discriminator", **_model_kwargs(cfg.discriminator, info, num_classes))
    loss = _make(cfg.loss, "loss")
    if not isinstance(loss, Loss):
        raise ConfigError(f"loss target {cfg.loss._target_} is not a ganexp Loss")
    tricks = []
    for name, node in (cfg.tricks or {}).items():
        if "_target_" not in node:  # a preset's settings for a trick that tricks=[...] no longer selects
            continue
        trick = _make(node, f"trick '{name}'")
        trick.name = name
        tricks.append(trick)
    if getattr(D, "classifier", None) is not None and not any(t.name == "acgan" for t in tricks):
        from ganexp.tricks.acgan import ACGAN

        tricks.append(ACGAN())  # discriminator.cond=acgan trains its class head; tricks=[acgan] sets the weights
    for h in [loss, *tricks]:
        G, D = h.modify_models(G, D)
    return G.to(device), D.to(device), loss, tricks


def _optimizer(node: DictConfig, params, who: str) -> torch.optim.Optimizer:
    spec = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if v is not None}
    return _make(spec, f"optimizer.{who}")(params)


#: Overrides that say where or how a run goes, not what it is: not hparams, not sweep folder names.
NOT_HPARAMS = ("out_dir", "resume", "device", "overwrite")


def override_hparams(overrides: list[str]) -> dict[str, Any]:
    """``key=value`` command-line overrides as hparams (numbers as numbers, lists as text)."""
    import yaml

    hp: dict[str, Any] = {}
    for o in overrides:
        key, _, raw = o.partition("=")
        key = key.lstrip("+~")
        if not _ or key.startswith(("hydra.", "hydra/")) or key in NOT_HPARAMS:
            continue
        for parse in (int, float, yaml.safe_load):  # YAML alone reads 1e-3 as text
            try:
                v = parse(raw)
                break
            except (ValueError, yaml.YAMLError):
                v = raw
        hp[key] = v if isinstance(v, (int, float, str, bool)) else raw
    return hp


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's hparams for TensorBoard's HPARAMS tab: the group choices, the main numbers, and
    every command-line override (so the swept values of a sweep are columns)."""
    hp: dict[str, Any] = {}
    overrides: list[str] = []
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        hp.update({k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra/") and v})
        overrides = list(hc.overrides.task)
    except ValueError:  # not under @hydra.main (tests, notebooks)
        pass
    hp.update({"lr_g": cfg.optimizer.g.lr, "lr_d": cfg.optimizer.d.lr, "d_steps": cfg.optimizer.d_steps,
               "batch_size": cfg.train.batch_size, "seed": cfg.seed, "tricks": ",".join(cfg.tricks or {}) or "none"})
    hp.update(override_hparams(overrides))
    return hp


def output_dir(cfg: DictConfig) -> Path:
    """The run folder: out_dir (the CLI makes it Hydra's run folder too), else Hydra's run folder."""
    if cfg.out_dir:
        return Path(cfg.out_dir).expanduser()
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        raise ConfigError("out_dir is not set and no Hydra run folder exists; pass out_dir=PATH") from None


#: What a resumed run must share with its checkpoint: the models, the game and the data they learn.
RESUME_KEYS = ("dataset", "generator", "discriminator", "loss", "conditional", "latent")
#: Dataset settings that say where and how to read the data, not what it is: free to change on resume.
RESUME_FREE = ("root", "download", "num_workers")


def _first_diff(a: Any, b: Any, key: str) -> tuple[str, Any, Any]:
    """The first key path where two config values differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in [*a, *(k for k in b if k not in a)]:
            if a.get(k) != b.get(k):
                return _first_diff(a.get(k), b.get(k), f"{key}.{k}")
    return key, a, b


def _known(now: Any, saved: Any) -> Any:
    """``now`` restricted to the keys the checkpoint's config has: options added to ganexp after
    the run was saved do not block resuming it (a real change still fails to load its weights)."""
    if isinstance(now, dict) and isinstance(saved, dict):
        return {k: _known(v, saved[k]) for k, v in now.items() if k in saved}
    return now


def check_resume(cfg: DictConfig, saved: dict[str, Any]) -> None:
    """A resumed run continues the same experiment: one line naming what differs, not a silent switch
    (optimizer settings, train.* and trick settings may change; the set of tricks may not)."""
    now = OmegaConf.to_container(cfg, resolve=True)
    now, saved = ({**c, "dataset": {k: v for k, v in (c.get("dataset") or {}).items() if k not in RESUME_FREE}}
                  for c in (now, saved))
    diff = [k for k in RESUME_KEYS if k in saved and _known(now.get(k), saved[k]) != saved[k]]
    if list(now.get("tricks") or {}) != list(saved.get("tricks") or {}):
        diff.append("tricks")
    if diff:
        k = diff[0]
        where, was, is_ = _first_diff(saved.get(k), now.get(k), k)
        if k == "tricks":
            where, was, is_ = k, list(saved.get(k) or {}), list(now.get(k) or {})
        raise ConfigError(f"the checkpoint does not fit this config: {', '.join(diff)} differ{'' if len(diff) > 1 else 's'} "
                          f"({where}: checkpoint {was}, now {is_}); resume with the run's own options or start a new run")


def keep_launch_values(cfg: DictConfig, saved: dict[str, Any], path: str = "") -> list[str]:
    """On resume, settings that refer to another option (``anneal_steps: ${train.steps}``) keep the
    value they resolved to at launch, so extending a run with a larger ``train.steps`` does not
    restart its schedules. Environment lookups (``${oc.env:...}``) are re-read. Returns a note for
    each value that would otherwise have changed; a value given on the command line is not a
    reference and wins as usual."""
    notes = []
    for key in cfg:
        if not isinstance(saved, dict) or key not in saved or (not path and key in RESUME_KEYS):
            continue  # the models, data and loss must match the checkpoint anyway (check_resume)
        where = f"{path}{key}"
        if OmegaConf.is_interpolation(cfg, key):
            ref = str(cfg._get_node(key)._value())
            if ":" in ref:  # a resolver (oc.env, now): not a reference to another option
                continue
            now = cfg[key]
            if now != saved[key]:
                cfg[key] = saved[key]
                notes.append(f"resume keeps {where}={saved[key]} as launched ({ref} would now give {now}); "
                             f"set {where} on the command line to change it")
        elif isinstance(cfg[key], DictConfig):
            notes += keep_launch_values(cfg[key], saved[key], f"{where}.")
    return notes


def check_objective(name: str | None, evaluators: list[Any]) -> None:
    """``optimized_metric`` must be something a configured metric logs (``fid_clf``, or a value of
    one such as ``modes_reverse_kl``), or a sweep would optimise nothing."""
    if not name:
        return
    made = [n for ev in evaluators for n in str(getattr(ev, "name", "")).split("+") if n and n != "none"]
    if not any(name == n or name.startswith(f"{n}_") for n in made):
        have = f"the metrics here log {', '.join(made)}" if made else "no metric is configured (metrics=[...])"
        raise ConfigError(f"optimized_metric={name} is not computed: {have}; choose one of them or add its metric")


def _run_dir(cfg: DictConfig, dist: distributed.Dist | None) -> Path:
    """The run folder, refused or prepared by rank 0 alone; under DDP rank 0 tells the others
    (Hydra's time-stamped folder is rank 0's; the other ranks have none)."""
    if dist is not None and not dist.is_main:
        kind, value = dist.broadcast(None)
        if kind == "error":
            raise distributed.FollowsRank0(value)
        return Path(value)
    try:
        out_dir = checkpoint.resolve(cfg.resume).parent.parent if cfg.resume else output_dir(cfg)
        # a file, a read-only folder, a live run or (unless overwrite=true) an earlier run: one line
        for note in files.prepare_run_dir(out_dir, overwrite=cfg.get("overwrite", False), resuming=bool(cfg.resume)):
            say(note)
    except GanexpError as e:
        if dist is not None:
            dist.broadcast(("error", str(e)))
        raise
    if dist is not None:
        dist.broadcast(("ok", str(out_dir)))
    return out_dir


def _sync_bn(cfg: DictConfig, dist: distributed.Dist | None, G: nn.Module, D: nn.Module,
             notes: list[str]) -> tuple[nn.Module, nn.Module]:
    """train.sync_bn=true: batch norm over the global batch (SyncBatchNorm, same state dict as BatchNorm)."""
    if not cfg.train.get("sync_bn", False):
        return G, D
    if dist is None:
        notes.append("note: train.sync_bn=true has no effect on one process (batch norm already sees the whole batch)")
        return G, D
    if dist.device.type != "cuda":
        raise ConfigError("train.sync_bn=true needs CUDA (SyncBatchNorm has no CPU kernel); use device=cuda or drop it")
    return distributed.convert_sync_bn(G), distributed.convert_sync_bn(D)


def build_run(cfg: DictConfig) -> Run:
    validate(cfg)
    dist = distributed.setup(cfg.device)  # None on one process
    device = dist.device if dist else resolve_device(cfg.device)
    if dist is not None:
        dist.local_batch(cfg.train.batch_size)  # one line when the global batch does not split evenly
    torch.manual_seed(cfg.seed)
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
    G, D = _sync_bn(cfg, dist, G, D, notes)
    if cfg.train.get("channels_last", False) and info.kind == "image":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    if device.type == "cuda":  # process-wide switches: this process trains one run
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(cfg.train.get("tf32", True))
    opt_g = _optimizer(cfg.optimizer.g, G.parameters(), "g")
    opt_d = _optimizer(cfg.optimizer.d, D.parameters(), "d")
    lr_schedule = None
    if cfg.optimizer.schedule != "constant" or cfg.optimizer.warmup_steps:
        lr_schedule = LRSchedule(cfg.optimizer.schedule, cfg.optimizer.decay_steps, cfg.optimizer.warmup_steps)
        lr_schedule.attach(opt_g, opt_d)
    latent = Latent(cfg.latent.dim, cfg.latent.prior, G.num_classes if hasattr(G, "num_classes") else 0, device)
    sch = Schedule(cfg.train.steps, cfg.train.batch_size, cfg.optimizer.d_steps, cfg.optimizer.g_steps,
                   cfg.train.log_every, cfg.train.sample_every, cfg.train.ckpt_every, int(cfg.eval.get("every", 0) or 0),
                   ranks=dist.world if dist else 1)
    evaluators, best = build_evaluators(cfg, reference_data(data), device, D)
    notes += [ev.note for ev in evaluators if getattr(ev, "note", None)]
    notes += [f"note: tricks.{k} settings are ignored: {k} is not in tricks=[...]"
              for k, v in (cfg.tricks or {}).items() if "_target_" not in v]
    check_objective(cfg.optimized_metric, evaluators)
    run = Run(
        data=data, G=G, D=D, loss=loss, tricks=tricks, opt_g=opt_g, opt_d=opt_d, latent=latent, schedule=sch,
        fixed_z=torch.empty(0), fixed_y=None, out_dir=out_dir, device=device,
        monitor=Monitor(out_dir, sch.steps, sch.log_every) if dist is None or dist.is_main else SilentMonitor(out_dir, sch.steps, sch.log_every),
        seed=cfg.seed,
        config=OmegaConf.to_container(cfg, resolve=True), hparams=_hparams(cfg), resume_state=state,
        evaluators=evaluators, best_metric=best, amp=AMP[cfg.train.amp], compile=cfg.train.compile, notes=notes,
        provenance=provenance.collect(device) | {"resumed_from_step": int(state["step"]) if state else 0}
        | ({"ranks": dist.world} if dist else {}),
        lr_schedule=lr_schedule, clip_grad_norm=cfg.optimizer.clip_grad_norm, dist=dist,
    )
    for h in [loss, *tricks]:
        h.setup(run)
    # after setup: a trick may change the latent prior
    if state is not None:
        run.fixed_z = state["fixed_z"].to(device)
        run.fixed_y = None if state["fixed_y"] is None else state["fixed_y"].to(device)
    else:
        run.fixed_z, run.fixed_y = run.latent.fixed(cfg.train.num_fixed, cfg.seed)
    if dist is not None:  # every rank built the same run from the same seed; from here each draws its share
        dist.start_streams(cfg.seed)
        data.shard(dist, cfg.seed, int(state["step"]) if state else 0)
    return run


def _accepted(target: str, offered: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``offered`` keyword arguments that ``target``'s constructor accepts."""
    try:
        params = inspect.signature(get_class(target)).parameters
    except Exception as e:
        raise ConfigError(f"cannot find class {target}: {e}") from None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return offered
    return {k: v for k, v in offered.items() if k in params}


def takes_discriminator(target: str) -> bool:
    """Whether a metric's constructor names a ``D`` argument (``**kwargs`` does not count)."""
    try:
        return "D" in inspect.signature(get_class(target)).parameters
    except Exception as e:
        raise ConfigError(f"cannot find class {target}: {e}") from None


def build_dataset(node: DictConfig | dict) -> Any:
    """The dataset of a config node (a checkpoint's own, for evaluation). ``subset`` (a fraction or a
    count) trains on a fixed part of it; the result's ``full`` is the whole set, the metrics' reference."""
    node = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    amount = node.pop("subset", None)
    data = _make(node, "dataset")
    return data if amount is None else data.subset(amount)


def reference_data(data) -> Any:
    """What metrics compare against: the whole dataset when training uses a subset of it."""
    return data.full if data.full is not None else data


def build_evaluators(cfg: DictConfig, data, device: torch.device,
                     D: nn.Module | None = None) -> tuple[list[Any], tuple[str, str] | None]:
    """Metrics computed during training: ``cfg.eval.metrics`` maps a name to a ``_target_`` node;
    the real data, the device and the discriminator are passed to constructors that accept them."""
    ev = cfg.get("eval") or {}
    nodes = ev.get("metrics") or {}
    evaluators = build_metrics(nodes, data, device, {k: ev[k] for k in METRIC_SETTINGS if k in ev}, D=D)
    best = (ev.best, ev.get("best_mode", "min")) if ev.get("best") else None
    return evaluators, best


#: Settings of the ``eval`` block offered to every metric that takes them (a metric's own YAML value wins).
METRIC_SETTINGS = ("num_samples", "batch_size", "cache_dir", "inception_weights")


def build_metrics(nodes, data, device: torch.device, settings: dict[str, Any],
                  forced: dict[str, Any] | None = None, D: nn.Module | None = None) -> list[Any]:
    """Metric objects from ``name -> _target_ node``; the real data, the device, the discriminator
    (for metrics of D's own heads, e.g. acgan_acc) and the eval settings go to constructors that
    accept them. A metric's own YAML value beats ``settings``; ``forced`` (given on the command
    line) beats both."""
    out = []
    for name, node in nodes.items():
        offered = ({"data": data, "device": device} | {k: v for k, v in settings.items() if k not in node}
                   | (forced or {}))
        kwargs = _accepted(node._target_, offered) | ({"D": D} if takes_discriminator(node._target_) else {})
        out.append(_make(node, f"metric '{name}'", **kwargs))
    return out
