"""Noise tricks: on D's inputs (instance noise), inside G (layer noise, dropout) and in the
latent prior."""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganexp.errors import require
from ganexp.hooks import Hook
from ganexp.models.latent import PRIORS
from ganexp.tricks.common import hidden_activations


class InstanceNoise(Hook):
    """Instance noise (Sønderby et al. 2017, Sec. 3.1; Arjovsky & Bottou 2017, Sec. 3.1;
    ganhacks #13): every input of D, real and fake, gets N(0, sigma_t^2) noise with
    sigma_t = std * max(0, 1 - t / anneal_steps), annealed to zero (anneal_steps=0: constant).

    The schedule is a function of the step, which the checkpoint holds, so a resumed run
    continues it where it stopped.
    """

    name = "instance_noise"

    def __init__(self, std: float = 0.1, anneal_steps: int = 2000):
        require(std >= 0 and anneal_steps >= 0, f"instance_noise needs std >= 0 and anneal_steps >= 0, got {std}, {anneal_steps}")
        self.std, self.anneal_steps = std, anneal_steps

    def std_at(self, step: int) -> float:
        if not self.anneal_steps:
            return self.std
        return self.std * max(0.0, 1.0 - step / self.anneal_steps)

    def on_d_input(self, x: Tensor, step: int) -> Tensor:
        s = self.std_at(step)
        return x + s * torch.randn_like(x) if s > 0 else x

    def scalars(self, step: int) -> dict[str, float]:
        return {"std": self.std_at(step)}


def _add_noise(std: float, module: nn.Module, args, out: Tensor) -> Tensor:
    return out + std * torch.randn_like(out) if module.training else out


def _dropout(p: float, module: nn.Module, args, out: Tensor) -> Tensor:
    return F.dropout(out, p, training=True)  # on in eval mode too: samples stay stochastic


class GLayerNoise(Hook):
    """Gaussian noise in every generator layer (Zhao et al. 2017, EBGAN; ganhacks #13):
    N(0, std^2) is added after each hidden activation of G while G trains (samples are clean)."""

    name = "g_layer_noise"

    def __init__(self, std: float = 0.1):
        require(std > 0, f"g_layer_noise.std must be > 0, got {std}")
        self.std = std

    def modify_models(self, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module]:
        # a partial of a module-level function, not a bound method: a deepcopy of G (EMA) keeps it
        for act in hidden_activations(G, self.name):
            act.register_forward_hook(partial(_add_noise, self.std))
        return G, D

    def scalars(self, step: int) -> dict[str, float]:
        return {"std": self.std}


class GDropout(Hook):
    """Dropout in G at train and sample time (Isola et al. 2017, pix2pix, Sec. 3.1; ganhacks #17):
    dropout with probability ``p`` after each hidden activation of G, also in eval mode."""

    name = "g_dropout"

    def __init__(self, p: float = 0.5):
        require(0.0 < p < 1.0, f"g_dropout.p must be in (0, 1), got {p}")
        self.p = p

    def modify_models(self, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module]:
        for act in hidden_activations(G, self.name):
            act.register_forward_hook(partial(_dropout, self.p))
        return G, D


class LatentPrior(Hook):
    """The latent prior (ganhacks #3, White 2016): normal, uniform on [-1, 1], or normal
    samples projected onto the sphere of radius sqrt(dim). The fixed sample latents follow it."""

    name = "latent_prior"

    def __init__(self, prior: str = "sphere"):
        require(prior in PRIORS, f"latent_prior.prior must be one of {', '.join(PRIORS)}; got '{prior}'")
        self.prior = prior

    def latent_prior(self, prior: str) -> str:
        return self.prior
