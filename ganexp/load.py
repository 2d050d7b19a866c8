"""What `ganexp sample` and `ganexp eval` build from a checkpoint: its generator and latent
(with the prior it trained on), and for evaluation the real data and the metrics. Training runs
are built in ``build.py``, which these reuse."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganexp import checkpoint
from ganexp.build import (METRIC_SETTINGS, build_dataset, build_metrics, build_models, reference_data,
                          resolve_device, takes_discriminator)
from ganexp.data import DataInfo
from ganexp.errors import GanexpError
from ganexp.sampling import Latent


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
    latent = Latent(cfg.latent.dim, saved_prior(state), getattr(G, "num_classes", 0), dev)
    return G.eval(), latent, state


def saved_prior(state: dict) -> str:
    """The latent prior a checkpoint's generator trained on: recorded in the checkpoint since
    ganexp 0.1 checkpoints carry ``latent``; older ones are read from the latent_prior trick's
    settings in their config (the trick, not ``latent.prior``, decided the prior then)."""
    if "latent" in state:
        return state["latent"]["prior"]
    cfg = state["config"]
    trick = (cfg.get("tricks") or {}).get("latent_prior")
    return trick.get("prior", "sphere") if trick else cfg["latent"]["prior"]


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
