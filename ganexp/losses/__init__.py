"""Adversarial losses; each option in ``conf/loss`` names one of these classes."""
from ganexp.losses.base import Loss
from ganexp.losses.gan import GAN, NSGAN, NSGANR1
from ganexp.losses.hinge import Hinge
from ganexp.losses.lsgan import LSGAN
from ganexp.losses.wgan import WGAN, WGANGP

__all__ = ["GAN", "LSGAN", "NSGAN", "NSGANR1", "WGAN", "WGANGP", "Hinge", "Loss"]
