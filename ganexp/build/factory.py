"""The factories that turn config nodes into objects, shared by training (``build_run``) and by
``sample``/``eval`` (which rebuild a checkpoint's models and data): models with their tricks, the
dataset, optimizers and metrics. With ``build_run`` these are the only callers of ``instantiate``."""
from __future__ import annotations

import inspect
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganexp.data import DataInfo
from ganexp.errors import ConfigError, GanexpError
from ganexp.hooks import Hook
from ganexp.losses import Loss

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


def _model_kwargs(node: DictConfig, info: DataInfo, num_classes: int) -> dict[str, Any]:
    """The dataset-dependent arguments a model class accepts (shape, channels, resolution, classes)."""
    try:
        params = inspect.signature(get_class(node._target_)).parameters
    except Exception as e:
        raise ConfigError(f"cannot find model class {node._target_}: {e}") from None
    offered = {"shape": list(info.shape), "is_image": info.is_image, "channels": info.channels,
               "resolution": info.resolution, "num_classes": num_classes}
    if not info.is_image and "channels" in params and "shape" not in params:
        raise ConfigError(f"{node._target_.rsplit('.', 1)[-1]} is an image model and '{info.name}' is 2D points; use model=mlp")
    return {k: v for k, v in offered.items() if k in params}


def resolve_auto_norm(cfg: DictConfig) -> None:
    """``discriminator.norm: auto`` becomes the loss's ``auto_d_norm``: ``layer`` for WGAN-GP (which
    drops batch norm from the critic, Gulrajani et al. 2017, Sec. 4), ``none`` for the loss with R1
    (StyleGAN2's D), ``batch`` otherwise; written into the config, so the run folder and checkpoints
    record what was built."""
    if cfg.discriminator.get("norm") == "auto":
        try:
            norm = getattr(get_class(cfg.loss._target_), "auto_d_norm", "batch")
        except Exception as e:
            raise ConfigError(f"cannot find loss class {cfg.loss.get('_target_')}: {e}") from None
        cfg.discriminator.norm = norm


def build_models(cfg: DictConfig, info: DataInfo, device: torch.device) -> tuple[nn.Module, nn.Module, Loss, list[Hook]]:
    """G, D, the loss and the tricks (with the hooks the models require), with architecture tricks
    applied (also used by sample/eval)."""
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
    for model in (G, D):  # the hooks a model brings (D's class head its AC-GAN terms), unless listed in tricks
        for hook in model.required_hooks() if hasattr(model, "required_hooks") else []:
            if all(t.name != hook.name for t in tricks):
                tricks.append(hook)
    for h in [loss, *tricks]:
        G, D = h.modify_models(G, D)
    return G.to(device), D.to(device), loss, tricks


def optimizer(node: DictConfig, params, who: str) -> torch.optim.Optimizer:
    spec = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if v is not None}
    return _make(spec, f"optimizer.{who}")(params)


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


def latent_prior(configured: str, hooks: list[Hook]) -> str:
    """The prior G trains on: the configured one as the hooks leave it (``tricks=[latent_prior]``)."""
    for h in hooks:
        configured = h.latent_prior(configured)
    return configured


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
