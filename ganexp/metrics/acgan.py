"""AC-GAN's auxiliary-classifier accuracy (Odena et al. 2017, Sec. 4.1): how often D's class head
names the label of a real image, and the class a generated image was asked for."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


@torch.inference_mode()
def classifier_accuracy(D: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> float:
    """The fraction of (x, y) pairs with argmax ``D.classify(x)`` == y, over all batches."""
    right, total = 0, 0
    for x, y in batches:
        right += int((D.classify(x).argmax(1) == y).sum())
        total += len(y)
    return right / max(total, 1)
