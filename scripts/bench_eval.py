"""Benchmark: classifier-feature FID on 10,000 generated digits, against two references run
in the same process: torchmetrics' FrechetInceptionDistance with the same classifier as its
``feature=`` module, and a naive version (all features in memory, scipy's sqrtm).

    python scripts/bench_eval.py [num_samples]

Prints seconds, samples/s and the ratio to the fastest reference; no absolute numbers are asserted.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
import torch
from hydra import compose, initialize_config_module
from rich.console import Console
from rich.table import Table
from scipy import linalg

import ganexp.build.schema  # noqa: F401
from ganexp.build.factory import build_models
from ganexp.data.digits import digits
from ganexp.engine.sampler import Sampler
from ganexp.metrics.evaluators import FID
from ganexp.metrics.features import feature_pass
from ganexp.metrics.realdata import real as real_samples
from ganexp.metrics.fid import fid_from_stats
from ganexp.models.latent import Latent


class FeaturesOnly(torch.nn.Module):
    """The classifier as torchmetrics wants it: images -> features, with ``num_features``."""

    def __init__(self, ext):
        super().__init__()
        self.ext, self.num_features = ext, ext.num_features

    def forward(self, x):
        return self.ext(x)[0]


def naive_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real  # may warn: untrained G gives a near-singular covariance
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(n: int = 10_000) -> None:
    torch.manual_seed(0)
    cache = os.environ.get("GANEXP_CACHE") or tempfile.mkdtemp(prefix="ganexp-bench-")
    with initialize_config_module("ganexp.conf", version_base="1.3"):
        cfg = compose("train", overrides=["device=cpu"])
    data = digits()
    G, _, _, _ = build_models(cfg, data.info, torch.device("cpu"))
    sampler = Sampler(G, Latent(cfg.latent.dim, cfg.latent.prior), 500)
    metric = FID("fid_clf", data, num_samples=n, cache_dir=cache)  # trains or loads the classifier
    _, t_ref = timed(metric.reference)  # real statistics: computed once, then cached on disk
    (ours, t_ours) = timed(lambda: metric(sampler, 1)["fid_clf"])
    fake = torch.cat([x for x, _ in sampler.batches(n)])
    _, t_gen = timed(lambda: [x for x, _ in sampler.batches(n)])
    real = torch.cat(list(real_samples(data, min(n, len(data)), 500)))  # the same reference set as ganexp

    def torchmetrics_fid():
        from torchmetrics.image.fid import FrechetInceptionDistance

        m = FrechetInceptionDistance(feature=FeaturesOnly(metric.ext), normalize=True)
        for i in range(0, n, 500):
            m.update(real[i:i + 500], real=True)  # slices past the end are empty: skipped
            m.update(fake[i:i + 500], real=False)
        return float(m.compute())

    def naive():
        with torch.inference_mode():
            f = [torch.cat([metric.ext(x[i:i + 500])[0] for i in range(0, len(x), 500)]).double().numpy() for x in (real, fake)]
        return naive_fid(*f)

    def streamed():
        ref = metric.reference()
        p = feature_pass(metric.ext, (fake[i:i + 500] for i in range(0, n, 500)), n, keep_feats=False)
        return fid_from_stats(*p.stats.mean_cov(), ref["mu"], ref["cov"])

    st, t_st = timed(streamed)
    tm, t_tm = timed(torchmetrics_fid)
    nv, t_nv = timed(naive)
    best = min(t_tm, t_nv)  # the references compute real features every time: that is what a cache saves
    table = Table(title=f"classifier-feature FID, {n:,} generated samples, {torch.get_num_threads()} CPU threads")
    for c in ("method", "what it includes", "seconds", "samples/s", "vs fastest reference"):
        table.add_column(c, justify="right" if c not in ("method", "what it includes") else "left")
    rows = [("ganexp fid_clf evaluator", "generate + features + FID (real stats cached)", t_ours, ours),
            ("  of which: generation", "generator forward only", t_gen, None),
            ("ganexp streamed FID", "features of fake + FID (real stats cached)", t_st, st),
            ("torchmetrics FID, same net", "features of real and fake + FID", t_tm, tm),
            ("naive (scipy sqrtm)", "features of real and fake + FID", t_nv, nv)]
    for name, what, t, _ in rows:
        table.add_row(name, what, f"{t:.2f}", f"{n / t:,.0f}", f"{t / best:.2f}x")
    console = Console(width=120)
    console.print(table)
    console.print(f"FID values: ganexp {ours:.3f} (streamed, same fakes: {st:.3f}), torchmetrics {tm:.3f}, naive {nv:.3f} "
                  f"(real reference: {len(real)} samples, ready in {t_ref:.2f}s: computed on first use, then read from the cache)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
