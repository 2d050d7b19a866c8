"""Small helpers the tricks share: compatibility checks and finding layers in the models."""
from __future__ import annotations

from torch import nn

from ganexp.errors import require

#: Activation modules after which generator tricks (layer noise, dropout) act.
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Tanh, nn.GELU, nn.SiLU, nn.Sigmoid)


def hidden_activations(G: nn.Module, trick: str) -> list[nn.Module]:
    """G's activation modules in forward order, without the output one (tanh for images)."""
    leaves = [m for m in G.modules() if not list(m.children())]
    acts = [m for m in leaves if isinstance(m, ACTIVATIONS)]
    if acts and leaves and leaves[-1] is acts[-1]:
        acts = acts[:-1]
    require(bool(acts), f"{trick} needs activation layers in the generator; {type(G).__name__} has none")
    return acts


def ganexp_discriminator(D: nn.Module, trick: str) -> None:
    """Tricks that extend D's features need the body/head/feat_dim shape of models.base.Discriminator."""
    ok = all(hasattr(D, a) for a in ("body", "head", "feat_dim", "features"))
    require(ok, f"{trick} needs a discriminator with body, head and feat_dim (ganexp.models.base.Discriminator); "
                f"got {type(D).__name__}")
