"""The offline feature network: a small CNN that ganexp trains on the dataset's own labels.

It needs no download, so FID/KID/IS on its features work anywhere. Its weights are cached
on disk by a hash of the dataset, the architecture and the seed, and reused by later runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganexp.rundir import files
from ganexp.errors import ConfigError


class SmallCNN(nn.Module):
    """Stride-2 conv blocks down to <= 4x4, then a ``num_features``-wide penultimate layer.

    ``forward`` returns (penultimate features, logits): features for FID/KID/PR, logits for IS.
    """

    def __init__(self, channels: int, resolution: int, num_classes: int, width: int = 16, num_features: int = 128):
        super().__init__()
        self.arch = dict(channels=channels, resolution=resolution, num_classes=num_classes, width=width,
                         num_features=num_features)
        layers, c, r = [], channels, resolution
        while r > 4:
            out = min(width * 2 ** (len(layers) // 3), 8 * width)
            k = 5 if r > 8 else 3
            layers += [nn.Conv2d(c, out, k, 2, k // 2), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            c, r = out, (r + 1) // 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c * r * r, num_features), nn.ReLU(inplace=True))
        self.fc = nn.Linear(num_features, num_classes)
        self.num_features, self.num_classes = num_features, num_classes

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.head(self.body(x))
        return f, self.fc(f)


def default_width(channels: int) -> int:
    """Digits need little capacity; RGB sets get a wider network."""
    return 16 if channels == 1 else 32


def _shift(x: Tensor, g: torch.Generator, pixels: int = 2) -> Tensor:
    """Random translations by up to ``pixels``: cheap augmentation that helps on 4,500 digits."""
    pad = F.pad(x, (pixels,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * pixels + 1, (2,), generator=g).tolist()
    return pad[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]


def train_classifier(x: Tensor, y: Tensor, num_classes: int, seed: int = 0, epochs: int = 12,
                     holdout: float = 0.1, batch_size: int = 128) -> tuple[SmallCNN, float]:
    """Fit a SmallCNN on (x in [-1, 1], y); return it (eval mode, CPU) and its held-out accuracy."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    n_val = max(1, int(len(x) * holdout))
    val, tr = perm[:n_val], perm[n_val:]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallCNN(x.shape[1], x.shape[-1], num_classes, default_width(x.shape[1]))
    steps = epochs * ((len(tr) + batch_size - 1) // batch_size)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    net.train()
    for _ in range(epochs):
        order = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(net(_shift(x[idx], g))[1], y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.inference_mode():
        pred = torch.cat([net(x[val[i:i + 1000]])[1].argmax(1) for i in range(0, len(val), 1000)])
    return net.requires_grad_(False), float((pred == y[val]).float().mean())


def check_labelled(info) -> None:
    if not info.num_classes or not info.is_image:
        raise ConfigError(f"classifier metrics (fid_clf, kid_clf, is_clf, pr_clf) need a labelled image dataset; "
                          f"'{info.name}' has none: use metrics=[fid] with InceptionV3 weights, or modes/kde for 2D data")


def labelled_pool(data, max_n: int = 60_000) -> tuple[Tensor, Tensor]:
    """Up to ``max_n`` labelled real samples, on the CPU, in [-1, 1]."""
    check_labelled(data.info)
    xs, ys = [], []
    for x, y in data.real_batches(min(max_n, len(data)), 1000):
        xs.append(x.float().cpu())
        ys.append(y.cpu())
    return torch.cat(xs), torch.cat(ys)


def load_or_train(data, cache_dir: str | os.PathLike, fingerprint: str, seed: int = 0, log=print) -> tuple[SmallCNN, float]:
    """The cached classifier for this dataset, training (and caching) it on first use."""
    info = data.info
    arch = dict(channels=info.channels, resolution=info.resolution, num_classes=info.num_classes,
                width=default_width(info.channels), num_features=128, version=1)
    key = hashlib.sha256(json.dumps({"data": fingerprint, "arch": arch, "seed": seed}, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir).expanduser() / "classifiers" / f"{info.name or 'data'}-{key}.pt"
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = SmallCNN(**state["arch"])
        net.load_state_dict(state["weights"])
        return net.eval().requires_grad_(False), float(state["accuracy"])
    t0 = time.perf_counter()
    x, y = labelled_pool(data)
    net, acc = train_classifier(x, y, info.num_classes, seed)
    log(f"trained the feature classifier for '{info.name}' in {time.perf_counter() - t0:.0f}s: "
        f"held-out accuracy {acc:.2%} (cached at {path})")
    files.torch_save(path, {"arch": net.arch, "weights": net.state_dict(), "accuracy": acc}, unique=True)
    return net, acc
