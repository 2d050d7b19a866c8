"""Feature networks and the streamed feature pass shared by every metric on one network.

An extractor is an ``nn.Module`` mapping images in [-1, 1] to (features, logits), with
``num_features`` and a ``key`` naming the network and its preprocessing (for the stats cache).
"""
from __future__ import annotations

import hashlib
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch import Tensor, nn

from ganexp.data.base import to_unit_range
from ganexp.errors import GanexpError
from ganexp.metrics.classifier import SmallCNN, check_labelled, load_or_train
from ganexp.metrics.fid import FeatureStats
from ganexp.metrics.inception_score import SplitScores

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


class ClassifierFeatures(nn.Module):
    """Penultimate features and logits of a SmallCNN trained on the dataset's labels."""

    def __init__(self, net: SmallCNN, accuracy: float, key: str):
        super().__init__()
        self.net, self.accuracy, self.key = net.eval(), accuracy, key
        self.num_features, self.num_classes = net.num_features, net.num_classes

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(x.float())


class InceptionFeatures(nn.Module):
    """torch-fidelity's InceptionV3 (the TF FID network) through torchmetrics: 2048-d pool
    features and the 1008 unbiased logits, from uint8 RGB resized to 299x299 with TF1's
    bilinear resize (``antialias=False``: the protocol behind published FID and IS)."""

    def __init__(self, weights: str):
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=weights, antialias=False)
        h = hashlib.sha256(Path(weights).read_bytes()[: 1 << 20]).hexdigest()[:12]
        self.key, self.num_features, self.num_classes = f"inception-v3-tf1resize-{h}", 2048, 1008

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u8 = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if u8.shape[1] == 1:
            u8 = u8.expand(-1, 3, -1, -1)
        feats, logits = self.net._torch_fidelity_forward(u8)
        return feats, logits


def _online(host: str = "github.com", timeout: float = 3.0) -> bool:
    """A connection test that cannot hang: DNS has no timeout, so it runs in a thread."""
    ok = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 1)
    return bool(ok)


def inception_weights(path: str | None, metric: str = "FID") -> str:
    """The local InceptionV3 weights file, downloading it into the torch hub cache when online."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise GanexpError(f"inception_weights={path}: no such file ({INCEPTION_FILE} expected)")
        return str(p)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    cached = hub / INCEPTION_FILE
    if cached.is_file():
        return str(cached)
    offline = (f"{metric} needs InceptionV3 weights ({INCEPTION_FILE}): put the file in {hub}/ or pass "
               f"eval.inception_weights=PATH; offline, use metrics=[{metric.lower()}_clf] instead")
    if os.environ.get("GANEXP_OFFLINE") == "1" or not _online():
        raise GanexpError(offline)
    try:
        hub.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=True)
    except Exception:
        raise GanexpError(offline) from None
    return str(cached)


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
    from ganexp.metrics.cache import dataset_fingerprint
    from ganexp.monitor import console

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


def real(data, n: int, batch_size: int, offset: int = 0) -> Iterator[Tensor]:
    """``n`` real samples from ``offset`` of a fixed shuffle (files are often sorted by class);
    streamed datasets give fresh random batches."""
    if hasattr(data, "x"):
        order = torch.randperm(len(data.x), generator=torch.Generator().manual_seed(0))[offset:offset + n]
        for i in range(0, len(order), batch_size):
            x = data.x[order[i:i + batch_size].to(data.x.device)]
            yield to_unit_range(x) if x.dtype == torch.uint8 else x
    else:
        for x, _ in data.real_batches(n, batch_size):
            yield x
