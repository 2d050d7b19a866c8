"""Architecture tricks on D: spectral normalisation of every layer and the layers that let D
compare the samples of a batch (minibatch discrimination, minibatch standard deviation).

The batch layers sit after ``D.body``; ``D.features`` then returns the extended features
(the original ones with the batch statistics appended) and ``D.head`` is rebuilt for the new
width, so feature matching sees what the head sees.
"""
from __future__ import annotations


import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm, spectral_norm

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext
from ganexp.models.base import ConditionalBatchNorm
from ganexp.tricks.common import ganexp_discriminator

SN_LAYERS = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


def _is_sn(m: nn.Module) -> bool:
    return parametrize.is_parametrized(m, "weight") and any(isinstance(p, _SpectralNorm) for p in m.parametrizations.weight)


def apply_spectral_norm(model: nn.Module, n_power_iterations: int = 1) -> None:
    # per-class batch-norm gains and shifts (generator.cond=cbn) are lookup tables, not layers
    tables = {id(t) for c in model.modules() if isinstance(c, ConditionalBatchNorm) for t in (c.gain, c.bias)}
    for m in list(model.modules()):
        if isinstance(m, SN_LAYERS) and id(m) not in tables and not parametrize.is_parametrized(m, "weight"):
            spectral_norm(m, n_power_iterations=n_power_iterations)


def _matrix(m: nn.Module, w: Tensor) -> Tensor:
    """The matrix spectral norm normalises: ConvTranspose weights are (in, out, ...), the rest (out, ...)."""
    return (w.transpose(0, 1) if isinstance(m, nn.ConvTranspose2d) else w).flatten(1)


class SpectralNorm(Hook):
    """Spectral normalisation (Miyato et al. 2018, Eq. 8): every convolution, linear and
    embedding layer of D (and of G with ``generator: true``) uses W / sigma(W), sigma
    estimated by one power iteration per training forward. Logs each layer's exact largest
    singular value after normalisation (~1) and the raw weight's estimated one."""

    name = "spectral_norm"

    def __init__(self, generator: bool = False, n_power_iterations: int = 1):
        self.generator, self.n_power_iterations = generator, n_power_iterations

    def modify_models(self, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module]:
        apply_spectral_norm(D, self.n_power_iterations)
        if self.generator:
            apply_spectral_norm(G, self.n_power_iterations)
        return G, D

    def setup(self, ctx: SetupContext) -> None:
        self.layers = [(n, m) for n, m in ctx.D.named_modules() if _is_sn(m)]

    @torch.no_grad()
    def scalars(self, step: int) -> dict[str, Tensor]:
        out = {}
        for name, m in self.layers:
            sn = m.parametrizations.weight[0]
            was = sn.training
            sn.eval()  # reading the weight in train mode would run an extra power iteration
            w = _matrix(m, m.weight)
            sn.train(was)
            out[f"sigma/{name}"] = torch.linalg.matrix_norm(w, ord=2)
            raw = _matrix(m, m.parametrizations.weight.original)
            out[f"sigma_raw/{name}"] = torch.vdot(sn._u, raw @ sn._v)
        return out


def _extend_head(D: nn.Module, layer: nn.Module, width: int) -> nn.Module:
    """Appends ``layer`` (features -> features + extra) to D.body and rebuilds the head (and the
    projection embedding) for the new width; new layers get spectral norm when D has it."""
    D.body = nn.Sequential(D.body, nn.Flatten(1), layer)
    D.feat_dim = width
    D.head = nn.Linear(width, 1)
    new = [D.head, layer]
    if getattr(D, "embed", None) is not None:
        D.embed = nn.Embedding(D.embed.num_embeddings, width)
        new.append(D.embed)
    if any(_is_sn(m) for m in D.modules()):
        for m in new:
            apply_spectral_norm(m)
    return D


class MinibatchDiscriminationLayer(nn.Module):
    """M_i = f_i T (B kernels of dim C); o(x_i)_b = sum_{j != i} exp(-||M_i,b - M_j,b||_1); out [f, o]."""

    def __init__(self, in_features: int, num_kernels: int, kernel_dim: int):
        super().__init__()
        self.num_kernels, self.kernel_dim = num_kernels, kernel_dim
        self.T = nn.Linear(in_features, num_kernels * kernel_dim, bias=False)
        nn.init.normal_(self.T.weight, 0.0, 0.05)

    def forward(self, f: Tensor) -> Tensor:
        m = self.T(f).view(-1, self.num_kernels, self.kernel_dim)
        l1 = (m[:, None] - m[None]).abs().sum(-1)  # (N, N, kernels)
        o = torch.exp(-l1).sum(1) - 1.0  # drop j = i, whose term is exp(0) = 1
        return torch.cat([f, o], dim=1)


class MinibatchDiscrimination(Hook):
    """Minibatch discrimination (Salimans et al. 2016, Sec. 3.2, Eq. under Fig. 1): D sees how
    close each sample's features are to the rest of the batch, so a collapsed G is easy to spot."""

    name = "minibatch_discrimination"

    def __init__(self, num_kernels: int = 50, kernel_dim: int = 5):
        self.num_kernels, self.kernel_dim = num_kernels, kernel_dim

    def modify_models(self, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module]:
        ganexp_discriminator(D, self.name)
        layer = MinibatchDiscriminationLayer(D.feat_dim, self.num_kernels, self.kernel_dim)
        return G, _extend_head(D, layer, D.feat_dim + self.num_kernels)


def stddev_group(group_size: int, n: int) -> int:
    """The group for a batch of n: the largest divisor of n not above ``group_size``, or the whole
    batch when that is 1 (a group of one has no spread: the feature would be a constant)."""
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    return n if g == 1 else g


class MinibatchStddevLayer(nn.Module):
    """Appends, per group of ``group_size`` samples, the feature-wise standard deviation over
    the group averaged into one value (batches the group does not divide: see ``stddev_group``)."""

    def __init__(self, group_size: int):
        super().__init__()
        self.group_size = group_size

    def forward(self, f: Tensor) -> Tensor:
        n = f.shape[0]
        g = stddev_group(self.group_size, n)
        groups = f.view(g, n // g, -1)  # sample i sits in group i % (n // g), as in ProGAN
        std = (groups.var(0, unbiased=False) + 1e-8).sqrt().mean(1)
        return torch.cat([f, std.repeat(g)[:, None]], dim=1)


class MinibatchStddev(Hook):
    """Minibatch standard deviation (Karras et al. 2018, ProGAN, Sec. 3): one extra feature,
    the average over features of their standard deviation within a group of samples.
    Appended to D's flat features rather than as a 4x4 map (equivalent before a linear head)."""

    name = "minibatch_stddev"

    def __init__(self, group_size: int = 4):
        require(group_size >= 2, f"minibatch_stddev.group_size must be >= 2 (a group of one has no spread), got {group_size}")
        self.group_size = group_size

    def setup(self, ctx: SetupContext) -> None:
        B, ranks = ctx.local_batch, ctx.ranks  # groups are made within each rank's share
        require(B % self.group_size == 0,
                f"minibatch_stddev.group_size={self.group_size} does not divide train.batch_size={B * ranks}"
                + (f" / {ranks} ranks" if ranks > 1 else "")
                + f"; use a batch size that is a multiple of it (e.g. {(B + (-B) % self.group_size) * ranks})")

    def modify_models(self, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module]:
        ganexp_discriminator(D, self.name)
        return G, _extend_head(D, MinibatchStddevLayer(self.group_size), D.feat_dim + 1)
