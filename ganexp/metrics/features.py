"""Feature extractors (the dataset classifier, InceptionV3 from ``inception.py``) and the
streamed feature pass shared by every metric on one network.

An extractor is an ``nn.Module`` mapping images in [-1, 1] to (features, logits), with
``num_features`` and a ``key`` naming the network and its preprocessing (for the stats cache).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch import Tensor, nn

from ganexp.errors import GanexpError
from ganexp.metrics.classifier import SmallCNN, check_labelled, load_or_train
from ganexp.metrics.fid import FeatureStats
from ganexp.metrics.inception import InceptionFeatures, inception_weights
from ganexp.metrics.inception_score import SplitScores
from ganexp.metrics.realdata import dataset_fingerprint


class ClassifierFeatures(nn.Module):
    """Penultimate features and logits of a SmallCNN trained on the dataset's labels."""

    def __init__(self, net: SmallCNN, accuracy: float, key: str):
        super().__init__()
        self.net, self.accuracy, self.key = net.eval(), accuracy, key
        self.num_features, self.num_classes = net.num_features, net.num_classes

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(x.float())


_EXTRACTORS: dict[tuple, nn.Module] = {}


def resolve_network(kind: str, data, weights: str | None = None, metric: str = "FID") -> str | None:
    """Fail at build time, not at the first evaluation: the Inception weights file (fetched
    when online), or the labels the classifier needs."""
    if kind == "inception":
        return inception_weights(weights, metric)
    if kind == "clf":
        return check_labelled(data.info)
    raise GanexpError(f"unknown feature network '{kind}'; use clf or inception")


def get_extractor(kind: str, data, device: torch.device, cache_dir: str, seed: int = 0,
                  weights: str | None = None, metric: str = "FID") -> nn.Module:
    """One extractor per network in this process, shared by all metrics that use it
    (the classifier is trained, or loaded from the cache, on first use)."""
    from ganexp.rundir.console import console

    path = resolve_network(kind, data, weights, metric)
    if kind == "inception":
        key = ("inception", path, str(device))
        if key not in _EXTRACTORS:
            with torch.random.fork_rng(devices=[]):  # a module's init draws from the training run's RNG
                _EXTRACTORS[key] = InceptionFeatures(path).to(device)
        return _EXTRACTORS[key]
    fp = dataset_fingerprint(data)
    key = ("clf", fp, str(Path(cache_dir).expanduser()), seed, str(device))
    if key not in _EXTRACTORS:
        with torch.random.fork_rng(devices=[]):
            net, acc = load_or_train(data, cache_dir, fp, seed, log=lambda m: console.print(m, highlight=False))
        console.print(f"feature classifier for '{data.info.name}': held-out accuracy {acc:.2%}", highlight=False)
        _EXTRACTORS[key] = ClassifierFeatures(net, acc, f"clf-{fp}-s{seed}").to(device)
    return _EXTRACTORS[key]


@dataclass
class Pass:
    """What one pass over a sample leaves: running moments, IS split sums, optionally the features."""

    stats: FeatureStats
    scores: SplitScores
    feats: Tensor | None


def feature_pass(ext: nn.Module, batches: Iterable[Tensor], total: int, keep_feats: bool, splits: int = 10) -> Pass:
    """Stream image batches through ``ext`` under inference mode; memory is O(D^2) unless
    ``keep_feats`` (KID and precision/recall need the features themselves)."""
    out = Pass(FeatureStats(), SplitScores(total, splits), None)
    kept = []
    with torch.inference_mode():
        for x in batches:
            f, logits = ext(x)
            out.stats.update(f)
            out.scores.update(logits)
            if keep_feats:
                kept.append(f.float().cpu())
    out.feats = torch.cat(kept) if kept else None
    return out


def generated(sampler, n: int, seed: int, device: torch.device) -> Iterator[Tensor]:
    """``n`` generated samples from fixed latents, without disturbing the training RNG."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for x, _ in sampler.batches(n):
            yield x
