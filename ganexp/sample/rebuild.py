"""What `ganexp sample` and `ganexp eval` rebuild from a checkpoint: its generator and latent
(with the prior it trained on), and for evaluation the real data and the metrics, through the
factories that training uses (``ganexp.build.factory``)."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganexp.build.factory import (METRIC_SETTINGS, build_dataset, build_metrics, build_models, latent_prior,
                                  reference_data, takes_discriminator)
from ganexp.data import DataInfo
from ganexp.engine import checkpoint
from ganexp.engine.launch import resolve_device
from ganexp.errors import GanexpError
from ganexp.models.latent import Latent


def load_generator(ckpt: str, device: str = "auto", ema: bool = True) -> tuple[nn.Module, Latent, dict]:
    """The generator stored in a checkpoint (its EMA copy when present and ``ema``), in eval mode."""
    state = checkpoint.load(ckpt)
    cfg = OmegaConf.create(state["config"])
    dev = resolve_device(device)
    info = DataInfo.from_dict(state["data_info"])
    G, _, loss, tricks = build_models(cfg, info, dev)
    key = "G_sample" if ema and "G_sample" in state else "G"
    try:
        G.load_state_dict(state[key])
    except RuntimeError as e:
        raise GanexpError(f"checkpoint {ckpt} does not fit its own config: {str(e).splitlines()[0]}") from None
    # the prior G trained on: recorded in the checkpoint; older checkpoints have only their config,
    # in which the hooks (tricks=[latent_prior]) decide it as they did when the run was built
    prior = state["latent"]["prior"] if "latent" in state else latent_prior(cfg.latent.prior, [loss, *tricks])
    latent = Latent(cfg.latent.dim, prior, getattr(G, "num_classes", 0), dev)
    return G.eval(), latent, state


def load_discriminator(state: dict, device) -> nn.Module:
    """The discriminator stored in a loaded checkpoint, in eval mode (for metrics of D's heads)."""
    cfg = OmegaConf.create(state["config"])
    _, D, _, _ = build_models(cfg, DataInfo.from_dict(state["data_info"]), device)
    try:
        D.load_state_dict(state["D"])
    except RuntimeError as e:
        raise GanexpError(f"the checkpoint's discriminator does not fit its own config: {str(e).splitlines()[0]}") from None
    return D.eval()


def build_eval(cfg: DictConfig, metric_nodes) -> tuple[nn.Module, Latent, dict, Any, list[Any]]:
    """What `ganexp eval` needs: the checkpoint's generator and latent, its state, the real data
    rebuilt from the checkpoint's own dataset config, and the metrics (a metric that takes D,
    e.g. acgan_acc, gets the checkpoint's discriminator)."""
    G, latent, state = load_generator(cfg.ckpt, cfg.device, cfg.ema)
    data = reference_data(build_dataset(state["config"]["dataset"])).to(latent.device)
    settings = {k: cfg[k] for k in METRIC_SETTINGS if cfg.get(k) is not None}
    # num_samples given to `ganexp eval` wins over every metric's own count; unset, each keeps its own
    forced = {"num_samples": cfg.num_samples} if cfg.get("num_samples") is not None else {}
    wants_d = any(takes_discriminator(node._target_) for node in metric_nodes.values())
    D = load_discriminator(state, latent.device) if wants_d else None
    return G, latent, state, data, build_metrics(metric_nodes, data, latent.device, settings, forced, D=D)
