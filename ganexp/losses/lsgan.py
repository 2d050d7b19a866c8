"""Least squares GAN (Mao et al. 2017)."""
from __future__ import annotations

from torch import Tensor

from ganexp.hooks import Targets
from ganexp.losses.base import Loss


class LSGAN(Loss):
    """LSGAN, Eq. 2: D: 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2];  G: 1/2 E[(D(G(z)) - c)^2].

    a = fake label, b = real label, c = the value G wants D to believe. Defaults are the
    0-1 coding of Eq. 9 (a=0, b=1, c=1); Eq. 8 (a=-1, b=1, c=0) minimises Pearson chi^2.
    """

    #: (real b, fake a, G's target c); each instance sets its own from its arguments
    default_targets = (1.0, 0.0, 1.0)

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0):
        self.default_targets = (b, a, c)

    def d_loss(self, d_real: Tensor, d_fake: Tensor, t: Targets) -> Tensor:
        return 0.5 * (d_real - t.real).pow(2).mean() + 0.5 * (d_fake - t.fake).pow(2).mean()

    def g_loss(self, d_fake: Tensor, t: Targets) -> Tensor:
        return 0.5 * (d_fake - t.gen).pow(2).mean()
