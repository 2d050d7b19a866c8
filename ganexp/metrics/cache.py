"""Real-data reference statistics, computed once per dataset + feature network + sample count
and cached on disk (written to a temporary file, then renamed: a crash never leaves half a file)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from ganexp.rundir import files
from ganexp.metrics.realdata import dataset_fingerprint, real  # noqa: F401  (re-exported)
from ganexp.metrics.fid import FeatureStats, fid_from_stats
from ganexp.metrics.inception_score import inception_score
from ganexp.metrics.kid import kid


def _stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = FeatureStats()
    s.update(feats)
    return s.mean_cov()


def compute_reference(data, ext: nn.Module, n: int, batch_size: int) -> dict:
    """One pass over the first min(2n, len) real samples: the reference set is the first
    min(n, len); the real-vs-real baseline compares two disjoint halves of m = min(n, len // 2)."""
    n_ref, m = min(n, len(data)), max(1, min(n, len(data) // 2))
    total = max(n_ref, 2 * m)
    fs, ls = [], []
    with torch.inference_mode():
        for x in real(data, total, batch_size):
            f, logits = ext(x)
            fs.append(f.float().cpu())
            ls.append(logits.float().cpu())
    feats, logits = torch.cat(fs), torch.cat(ls)
    mu, cov = _stats(feats[:n_ref])
    a, b = feats[:m], feats[m:2 * m]
    return {"mu": mu, "cov": cov, "feats": feats[:n_ref].clone(), "n_ref": n_ref, "n_baseline": m,
            "baseline_fid": fid_from_stats(*_stats(a), *_stats(b)), "baseline_kid": kid(a, b),
            "is_real": inception_score(logits[:n_ref])}


def reference(data, ext: nn.Module, n: int, cache_dir: str, batch_size: int = 500) -> dict:
    """The cached reference for (dataset, extractor, n), computing and caching it on first use."""
    key = hashlib.sha256(f"{dataset_fingerprint(data)}|{ext.key}|{n}".encode()).hexdigest()[:20]
    path = Path(cache_dir).expanduser() / "stats" / f"{data.info.name or 'data'}-{n}-{key}.pt"
    memo = getattr(ext, "_refs", None)
    if memo is None:
        memo = ext._refs = {}
    if key in memo:
        return memo[key]
    if path.is_file():
        memo[key] = torch.load(path, map_location="cpu", weights_only=True)
        return memo[key]
    ref = compute_reference(data, ext, n, batch_size)
    files.torch_save(path, ref, unique=True)
    memo[key] = ref
    return ref
