"""Generator objectives other than fooling D's last layer."""
from __future__ import annotations

import torch
from torch import Tensor

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext, StepContext


def feature_distance(f_real: Tensor, f_fake: Tensor) -> Tensor:
    """||E f(x) - E f(G(z))||^2 / dim: the squared distance of the batch means, per feature."""
    return (f_real.mean(0) - f_fake.mean(0)).pow(2).mean()


class FeatureMatching(Hook):
    """Feature matching (Salimans et al. 2016, Sec. 3.1): G matches the mean of D's features
    f (the input of D's last layer, ``D.features``) on real and fake batches,
    ||E_x f(x) - E_z f(G(z))||^2, averaged over the feature dimensions.

    ``replace: true`` makes it G's whole objective, as in the paper; otherwise
    ``weight`` times it is added to the adversarial G loss.
    """

    name = "feature_matching"

    def __init__(self, weight: float = 1.0, replace: bool = False):
        require(weight > 0, f"feature_matching.weight must be > 0, got {weight}")
        self.weight, self.replace = weight, replace

    def setup(self, ctx: SetupContext) -> None:
        require(hasattr(ctx.D, "features"),
                f"feature_matching needs a discriminator with features(x) (ganexp.models.base.Discriminator); got {type(ctx.D).__name__}")

    def on_g_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        with torch.no_grad():
            f_real = ctx.D.features(ctx.real, ctx.y_real)
        fm = feature_distance(f_real, ctx.D.features(ctx.fake, ctx.y_fake))
        ctx.logs[f"trick/{self.name}/value"] = fm.detach()
        return self.weight * fm if self.replace else loss + self.weight * fm
