"""``tricks=[acgan]``: the weights of AC-GAN's class terms. The hook lives beside D's class head,
which brings it by itself (``ganexp.models.acgan``); this module is the trick's name for it."""
from ganexp.models.acgan import ACGAN, class_loss

__all__ = ["ACGAN", "class_loss"]
