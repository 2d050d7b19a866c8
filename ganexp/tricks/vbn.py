"""Virtual batch normalisation of G (Salimans et al. 2016, Sec. 3.4)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext


class VirtualBatchNorm(nn.Module):
    """Normalises each example with the statistics of the reference batch and of itself:
    mu = (n mu_ref + mu_x) / (n + 1), likewise the mean square (Salimans et al.'s reference
    code); the reference rows themselves use the reference statistics alone. Takes over the
    affine parameters of the BatchNorm it replaces. The first ``n_ref`` rows of every input
    are the reference batch (G prepends it, see ``VirtualBatchNormTrick``)."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, n_ref: int):
        super().__init__()
        self.n_ref, self.eps = n_ref, bn.eps
        self.weight, self.bias = bn.weight, bn.bias

    def forward(self, x: Tensor) -> Tensor:
        n = self.n_ref
        spatial = list(range(2, x.dim()))
        ref, new = x[:n], x[n:]
        mean_ref = ref.mean([0, *spatial], keepdim=True)
        sq_ref = ref.pow(2).mean([0, *spatial], keepdim=True)
        own, own_sq = (new.mean(spatial, keepdim=True), new.pow(2).mean(spatial, keepdim=True)) if spatial else (new, new.pow(2))
        c = 1.0 / (n + 1)
        mean = c * own + (1 - c) * mean_ref
        var = (c * own_sq + (1 - c) * sq_ref - mean.pow(2)).clamp_min(0)
        out = torch.cat([(ref - mean_ref) * torch.rsqrt(sq_ref - mean_ref.pow(2) + self.eps),
                         (new - mean) * torch.rsqrt(var + self.eps)])
        if self.weight is not None:
            shape = [1, -1] + [1] * len(spatial)
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


class Reference(nn.Module):
    """The fixed reference latents (and labels) as buffers, so they are saved with G."""

    def __init__(self, z: Tensor, y: Tensor | None):
        super().__init__()
        self.register_buffer("z", z)
        self.register_buffer("y", y)


def _prepend_reference(G: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    z, y = args[0], args[1] if len(args) > 1 else kwargs.pop("y", None)
    ref = G.vbn_reference
    y = None if y is None else torch.cat([ref.y, y])
    return (torch.cat([ref.z, z]), y), kwargs


def _drop_reference(G: nn.Module, args: tuple, out: Tensor) -> Tensor:
    return out[G.vbn_reference.z.shape[0]:]


class VirtualBatchNormTrick(Hook):
    """Virtual batch normalisation (Salimans et al. 2016, Sec. 3.4): G's BatchNorm layers are
    replaced by ``VirtualBatchNorm``; every G forward runs a fixed reference batch of
    ``n_ref`` latents in front of the real input, so each sample's normalisation no longer
    depends on the rest of its batch. Costs an extra forward of n_ref samples per G call."""

    name = "virtual_batch_norm"

    def __init__(self, n_ref: int = 64, seed: int = 0):
        require(n_ref >= 2, f"virtual_batch_norm.n_ref must be >= 2, got {n_ref}")
        self.n_ref, self.seed = n_ref, seed

    def modify_models(self, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module]:
        norms = [(parent, name, child) for parent in G.modules() for name, child in parent.named_children()
                 if isinstance(child, nn.modules.batchnorm._BatchNorm)]
        require(bool(norms), f"virtual_batch_norm needs batch norm in the generator (generator.norm=batch for dcgan, "
                             f"generator.batch_norm=true for mlp); {type(G).__name__} has none")
        for parent, name, bn in norms:
            setattr(parent, name, VirtualBatchNorm(bn, self.n_ref))
        g = torch.Generator().manual_seed(self.seed)
        classes = getattr(G, "num_classes", 0)
        y = torch.arange(self.n_ref) % classes if classes else None
        G.vbn_reference = Reference(torch.randn(self.n_ref, G.z_dim, generator=g), y)
        G.register_forward_pre_hook(_prepend_reference, with_kwargs=True)
        G.register_forward_hook(_drop_reference)
        return G, D

    @torch.no_grad()
    def setup(self, ctx: SetupContext) -> None:
        # redraw the reference latents from the run's prior (a latent_prior trick may have changed it)
        ctx.G.vbn_reference.z.copy_(ctx.latent.z(self.n_ref, torch.Generator().manual_seed(self.seed)))
