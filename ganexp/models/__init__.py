"""Generators and discriminators; each option in ``conf/generator`` and ``conf/discriminator`` names one."""
from ganexp.models.attention import SelfAttention
from ganexp.models.base import Discriminator, Generator
from ganexp.models.dcgan import DCGANDiscriminator, DCGANGenerator
from ganexp.models.mlp import MLPDiscriminator, MLPGenerator
from ganexp.models.resnet import ResNetDiscriminator, ResNetGenerator

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "Discriminator", "Generator", "MLPDiscriminator", "MLPGenerator",
           "ResNetDiscriminator", "ResNetGenerator", "SelfAttention"]
