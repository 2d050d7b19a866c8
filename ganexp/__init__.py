"""ganexp: a config-driven experiment tool for generative adversarial networks."""

__version__ = "0.1.0"
