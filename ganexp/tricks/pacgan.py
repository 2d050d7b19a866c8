"""PacGAN packing (Lin et al. 2018): the discriminator judges m samples at once."""
from __future__ import annotations

from functools import partial

from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext, Targets
from ganexp.tricks.common import ganexp_discriminator


def pack(x: Tensor, m: int) -> Tensor:
    """(B, ...) -> (B/m, ...) packs of m consecutive samples: features concatenated for flat
    inputs, channels for images (B, C, H, W) -> (B/m, m C, H, W)."""
    return x.reshape(x.shape[0] // m, m * x.shape[1], *x.shape[2:])


def _pack_input(m: int, module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook on D.body. In training every batch is packed (its size must divide by m).
    In eval mode (D's landscape in the scatter plots) each sample is judged as a pack of m copies
    of itself, one value per sample: where D would put a pack that sits entirely at x."""
    x = args[0]
    if not module.training:
        x = x.repeat_interleave(m, dim=0)
    elif x.shape[0] % m:
        raise ValueError(f"pacgan packs {m} samples and D got a batch of {x.shape[0]}")
    return (pack(x, m), *args[1:])


def _first_layer(D: nn.Module) -> tuple[nn.Module, str, nn.Module] | None:
    for parent in D.body.modules():
        for name, child in parent.named_children():
            if isinstance(child, (nn.Linear, nn.Conv2d)):
                return parent, name, child
    return None


def _input_layers(D: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """The layers that read D's input: the model's own list when several do (``input_layers()``;
    resnet: the first block's convolution and its shortcut), else the first layer of ``D.body``."""
    if hasattr(D, "input_layers"):
        return D.input_layers()
    first = _first_layer(D)
    return [first] if first is not None else []


def _widen(layer: nn.Module, m: int, init=None) -> nn.Module:
    """The same layer with m times the inputs (features or channels), initialised by ``init(new)``,
    the model's own init when it has one (``D.init_layer``: resnet's xavier or orthogonal). Else a
    zero or absent bias means the model used the DCGAN N(0, 0.02) init (``dcgan_init_`` zeroes
    biases): the new layer gets it too; otherwise PyTorch's default init for the wider fan-in. A
    layer with its own ``widened(m)`` (StyleGAN2's equalised-lr convolution) builds its wider self."""
    if hasattr(layer, "widened"):
        return layer.widened(m)
    dcgan = init is None and (layer.bias is None or not bool(layer.bias.detach().any()))
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features * m, layer.out_features, bias=layer.bias is not None)
    else:
        new = nn.Conv2d(layer.in_channels * m, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                        layer.dilation, layer.groups, layer.bias is not None, layer.padding_mode)
    if init is not None:
        init(new)
    elif dcgan:
        nn.init.normal_(new.weight, 0.0, 0.02)
        if new.bias is not None:
            nn.init.zeros_(new.bias)
    if parametrize.is_parametrized(layer, "weight"):  # spectral_norm listed before pacgan
        spectral_norm(new)
    return new.to(layer.weight.device)


class PacGAN(Hook):
    """Packing (Lin et al. 2018, Sec. 3): D sees m samples concatenated, all real or all
    generated, and returns one logit per pack; G is unchanged. D's first layer takes m times the
    inputs (MLP: features; DCGAN: channels). The engine's real and fake batches are separate D
    forwards, so a pack never mixes real and fake. Losses average over packs; per-sample targets
    (soft_labels, label_flip) are reduced to one per pack (its first sample's).

    Gradient penalties (wgan_gp, r1, dragan) run D on batches of samples as before and
    constrain each sample's gradient norm, not the pack's. Conditional models are refused
    (packs would mix labels)."""

    name = "pacgan"

    def __init__(self, m: int = 2):
        require(isinstance(m, int) and m >= 2, f"pacgan.m must be an integer >= 2 (samples per pack), got {m}")
        self.m = m

    def modify_models(self, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module]:
        ganexp_discriminator(D, self.name)
        require(not getattr(D, "num_classes", 0), "pacgan packs unlabelled samples; conditional=true is not supported with it")
        inputs = _input_layers(D)
        require(bool(inputs), f"pacgan needs a linear or convolutional first layer in D; {type(D).__name__} has none")
        own = getattr(D, "init_layer", None)
        for parent, name, layer in inputs:
            setattr(parent, name, _widen(layer, self.m, partial(own, name) if own else None))
        D.body.register_forward_pre_hook(partial(_pack_input, self.m))  # a partial: deepcopy keeps it
        D.pack = self.m
        return G, D

    def setup(self, ctx: SetupContext) -> None:
        B = ctx.local_batch  # packs are made within each rank's share of the batch
        where = f"train.batch_size={ctx.batch_size}" + (f" / {ctx.ranks} ranks" if ctx.ranks > 1 else "")
        require(B % self.m == 0, f"pacgan.m={self.m} must divide {where}")
        later = [t.name for t in ctx.tricks[ctx.tricks.index(self) + 1:] if type(t).on_targets is not Hook.on_targets]
        require(not later, f"list pacgan after {', '.join(later)}: it packs the targets those tricks draw")
        self.B = B

    def _pack_target(self, v: Tensor | float) -> Tensor | float:
        if isinstance(v, Tensor) and v.dim() and v.shape[0] == self.B:
            return v.view(self.B // self.m, self.m)[:, 0]
        return v

    def on_targets(self, t: Targets, step: int) -> Targets:
        return Targets(self._pack_target(t.real), self._pack_target(t.fake), self._pack_target(t.gen))

    def scalars(self, step: int) -> dict[str, float]:
        return {"m": float(self.m)}

