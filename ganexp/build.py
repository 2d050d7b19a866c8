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

from ganexp import checkpoint, files
from ganexp.data import DataInfo
from ganexp.errors import ConfigError, GanexpError
from ganexp.hooks import Hook
from ganexp.losses import Loss
from ganexp.monitor import Monitor, say
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
        (cfg.train.steps >= 0, f"train.steps must be >= 0, got {cfg.train.steps}"),
        (cfg.train.batch_size >= 1, f"train.batch_size must be >= 1, got {cfg.train.batch_size}"),
        (cfg.train.log_every >= 1, f"train.log_every must be >= 1, got {cfg.train.log_every}"),
        (cfg.train.sample_every >= 0, f"train.sample_every must be >= 0, got {cfg.train.sample_every}"),
        (cfg.train.ckpt_every >= 0, f"train.ckpt_every must be >= 0, got {cfg.train.ckpt_every}"),
        (cfg.train.num_fixed >= 1, f"train.num_fixed must be >= 1, got {cfg.train.num_fixed}"),
        (cfg.latent.dim >= 1, f"latent.dim must be >= 1, got {cfg.latent.dim}"),
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


def build_models(cfg: DictConfig, info: DataInfo, device: torch.device) -> tuple[nn.Module, nn.Module, Loss, list[Hook]]:
    """G, D, the loss and the tricks, with architecture tricks applied (also used by sample/eval)."""
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
        trick = _make(node, f"trick '{name}'")
        trick.name = name
        tricks.append(trick)
    for h in [loss, *tricks]:
        G, D = h.modify_models(G, D)
    return G.to(device), D.to(device), loss, tricks


def _optimizer(node: DictConfig, params, who: str) -> torch.optim.Optimizer:
    spec = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if v is not None}
    return _make(spec, f"optimizer.{who}")(params)


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    hp: dict[str, Any] = {}
    try:
        from hydra.core.hydra_config import HydraConfig

        hp.update({k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra/") and v})
    except ValueError:  # not under @hydra.main (tests, notebooks)
        pass
    hp.update({"lr_g": cfg.optimizer.g.lr, "lr_d": cfg.optimizer.d.lr, "d_steps": cfg.optimizer.d_steps,
               "batch_size": cfg.train.batch_size, "seed": cfg.seed, "tricks": ",".join(cfg.tricks or {}) or "none"})
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


def build_run(cfg: DictConfig) -> Run:
    validate(cfg)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    state = checkpoint.load(cfg.resume) if cfg.resume else None
    if state is not None:
        check_resume(cfg, state["config"])
    out_dir = checkpoint.resolve(cfg.resume).parent.parent if cfg.resume else output_dir(cfg)
    # a file, a read-only folder, a live run or (unless overwrite=true) an earlier run: one line
    for note in files.prepare_run_dir(out_dir, overwrite=cfg.get("overwrite", False), resuming=bool(cfg.resume)):
        say(note)

    data = _make(cfg.dataset, "dataset").to(device)
    info = data.info
    G, D, loss, tricks = build_models(cfg, info, device)
    opt_g = _optimizer(cfg.optimizer.g, G.parameters(), "g")
    opt_d = _optimizer(cfg.optimizer.d, D.parameters(), "d")
    latent = Latent(cfg.latent.dim, cfg.latent.prior, G.num_classes if hasattr(G, "num_classes") else 0, device)
    sch = Schedule(cfg.train.steps, cfg.train.batch_size, cfg.optimizer.d_steps, cfg.optimizer.g_steps,
                   cfg.train.log_every, cfg.train.sample_every, cfg.train.ckpt_every, int(cfg.eval.get("every", 0) or 0))
    evaluators, best = build_evaluators(cfg, data, device)
    run = Run(
        data=data, G=G, D=D, loss=loss, tricks=tricks, opt_g=opt_g, opt_d=opt_d, latent=latent, schedule=sch,
        fixed_z=torch.empty(0), fixed_y=None, out_dir=out_dir, device=device,
        monitor=Monitor(out_dir, sch.steps, sch.log_every), seed=cfg.seed,
        config=OmegaConf.to_container(cfg, resolve=True), hparams=_hparams(cfg), resume_state=state,
        evaluators=evaluators, best_metric=best, amp=AMP[cfg.train.amp], compile=cfg.train.compile,
    )
    for h in [loss, *tricks]:
        h.setup(run)
    # after setup: a trick may change the latent prior
    if state is not None:
        run.fixed_z = state["fixed_z"].to(device)
        run.fixed_y = None if state["fixed_y"] is None else state["fixed_y"].to(device)
    else:
        run.fixed_z, run.fixed_y = run.latent.fixed(cfg.train.num_fixed, cfg.seed)
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


def build_evaluators(cfg: DictConfig, data, device: torch.device) -> tuple[list[Any], tuple[str, str] | None]:
    """Metrics computed during training: ``cfg.eval.metrics`` maps a name to a ``_target_`` node;
    the real data and the device are passed to constructors that accept them."""
    ev = cfg.get("eval") or {}
    nodes = ev.get("metrics") or {}
    evaluators = build_metrics(nodes, data, device, {k: ev[k] for k in METRIC_SETTINGS if k in ev})
    best = (ev.best, ev.get("best_mode", "min")) if ev.get("best") else None
    return evaluators, best


def load_generator(ckpt: str, device: str = "auto", ema: bool = True) -> tuple[nn.Module, Latent, dict]:
    """The generator stored in a checkpoint (its EMA copy when present and ``ema``), in eval mode."""
    state = checkpoint.load(ckpt)
    cfg = OmegaConf.create(state["config"])
    dev = resolve_device(device)
    info = DataInfo.from_dict(state["data_info"])
    G, _, _, _ = build_models(cfg, info, dev)
    key = "G_sample" if ema and "G_sample" in state else "G"
    try:
        G.load_state_dict(state[key])
    except RuntimeError as e:
        raise GanexpError(f"checkpoint {ckpt} does not fit its own config: {str(e).splitlines()[0]}") from None
    latent = Latent(cfg.latent.dim, cfg.latent.prior, getattr(G, "num_classes", 0), dev)
    return G.eval(), latent, state


#: Settings of the ``eval`` block offered to every metric that takes them (a metric's own YAML value wins).
METRIC_SETTINGS = ("num_samples", "batch_size", "cache_dir", "inception_weights")


def build_metrics(nodes, data, device: torch.device, settings: dict[str, Any]) -> list[Any]:
    """Metric objects from ``name -> _target_ node``; the real data, the device and the eval
    settings go to constructors that accept them."""
    out = []
    for name, node in nodes.items():
        offered = {"data": data, "device": device} | {k: v for k, v in settings.items() if k not in node}
        out.append(_make(node, f"metric '{name}'", **_accepted(node._target_, offered)))
    return out


def build_eval(cfg: DictConfig, metric_nodes) -> tuple[nn.Module, Latent, dict, Any, list[Any]]:
    """What `ganexp eval` needs: the checkpoint's generator and latent, its state, the real data
    rebuilt from the checkpoint's own dataset config, and the metrics."""
    G, latent, state = load_generator(cfg.ckpt, cfg.device, cfg.ema)
    data = _make(state["config"]["dataset"], "dataset").to(latent.device)
    settings = {k: cfg[k] for k in METRIC_SETTINGS if k in cfg}
    return G, latent, state, data, build_metrics(metric_nodes, data, latent.device, settings)
