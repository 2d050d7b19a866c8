"""The metric objects that conf/metrics/*.yaml build: ``ev(sampler, step) -> {name: value}``.

Feature metrics on one network share a single generated pass per step. Each FID and KID is
reported beside its real-vs-real baseline (two disjoint real samples of the same size), named
with its size when that differs from the score's (see ``FeatureMetric.baseline_key``).
"""
from __future__ import annotations

import weakref

import torch

from ganexp.errors import ConfigError
from ganexp.metrics.acgan import classifier_accuracy
from ganexp.metrics.cache import reference
from ganexp.metrics.features import Pass, feature_pass, generated, get_extractor, resolve_network
from ganexp.metrics.inception import inception_on_disk
from ganexp.metrics.fid import fid_from_stats
from ganexp.metrics.kde import kde_figure
from ganexp.metrics.kid import kid
from ganexp.metrics.modes import mode_coverage, stacked_labels, stacked_mode_coverage
from ganexp.metrics.precision_recall import precision_recall
from ganexp.metrics.prdc import prdc
from ganexp.metrics.realdata import real


class FeatureMetric:
    """Base of the metrics on a feature network (``features``: clf or inception)."""

    needs_feats = False

    def __init__(self, name: str, data, device: torch.device | str = "cpu", features: str = "clf",
                 num_samples: int = 10_000, batch_size: int = 500, cache_dir: str = "~/.cache/ganexp",
                 inception_weights: str | None = None, seed: int = 0):
        self.name, self.data, self.device, self.n, self.bs = name, data, torch.device(device), num_samples, batch_size
        self.cache_dir, self.seed = cache_dir, seed
        self.features, metric = features, name.split("_")[0].upper()
        self.weights = resolve_network(features, data, inception_weights, metric)
        self._ext = None

    @property
    def ext(self):
        """The feature network, built on first use (building a run stays fast)."""
        if self._ext is None:
            self._ext = get_extractor(self.features, self.data, self.device, self.cache_dir, self.seed, self.weights)
            if self.needs_feats:
                self._ext.keep_feats = True
        return self._ext

    def reference(self) -> dict:
        return reference(self.data, self.ext, self.n, self.cache_dir, self.bs)

    def generated(self, sampler, step: int) -> Pass:
        """The generated pass at this step, computed by the first metric that asks for it."""
        token = (step, self.n, self.seed)
        memo = getattr(self.ext, "_gen", None)
        stale = memo is None or memo[0]() is not sampler or memo[1] != token
        if stale or (self.needs_feats and memo[2].feats is None):
            p = feature_pass(self.ext, generated(sampler, self.n, self.seed, self.device), self.n,
                             keep_feats=getattr(self.ext, "keep_feats", False))
            self.ext._gen = memo = (weakref.ref(sampler), token, p)
        return memo[2]


    def baseline_key(self, ref: dict) -> str:
        """``<name>_baseline`` when the real-vs-real floor was computed at the score's own sizes (n
        generated vs n real, possible while 2n <= the dataset), else ``<name>_baseline_n<m>``: the
        floor of two real halves of m samples each, labelled with its size (FID and KID fall with n)."""
        same = ref["n_baseline"] == self.n and ref["n_ref"] == self.n
        return f"{self.name}_baseline" if same else f"{self.name}_baseline_n{ref['n_baseline']}"


class FID(FeatureMetric):
    def __call__(self, sampler, step: int) -> dict[str, float]:
        ref, gen = self.reference(), self.generated(sampler, step)
        return {self.name: fid_from_stats(*gen.stats.mean_cov(), ref["mu"], ref["cov"]),
                self.baseline_key(ref): ref["baseline_fid"]}


class KID(FeatureMetric):
    needs_feats = True

    def __call__(self, sampler, step: int) -> dict[str, float]:
        ref, gen = self.reference(), self.generated(sampler, step)
        return {self.name: kid(ref["feats"], gen.feats), self.baseline_key(ref): ref["baseline_kid"]}


class IS(FeatureMetric):
    def __call__(self, sampler, step: int) -> dict[str, float]:
        return {self.name: self.generated(sampler, step).scores.score()[0], f"{self.name}_real": self.reference()["is_real"]}


class PrecisionRecall(FeatureMetric):
    needs_feats = True

    def __init__(self, *args, k: int = 3, **kwargs):
        super().__init__(*args, **kwargs)
        self.k = k

    def __call__(self, sampler, step: int) -> dict[str, float]:
        p, r = precision_recall(self.reference()["feats"], self.generated(sampler, step).feats, self.k)
        return {f"{self.name}_precision": p, f"{self.name}_recall": r}


class PRDC(FeatureMetric):
    """Precision, recall, density and coverage (Naeem et al. 2020) at k nearest neighbours, each beside
    its real-vs-real value: the reference set against the next disjoint real samples of the same
    size (``<name>_<field>_baseline``; ``_baseline_n<m>`` when the dataset holds fewer, m)."""

    needs_feats = True

    def __init__(self, *args, k: int = 5, **kwargs):
        super().__init__(*args, **kwargs)
        self.k, self._baseline = k, None

    def baseline(self, ref: dict) -> dict[str, float]:
        if self._baseline is None:
            feats, n_ref, held = ref["feats"], ref["n_ref"], hasattr(self.data, "x")
            m = min(self.n, n_ref) if held else self.n
            if held and len(self.data) - n_ref < m:  # the reference holds (nearly) all the data: its two halves, as FID's
                m = n_ref // 2
                feats, other = feats[:m], feats[m:2 * m]
            else:
                with torch.inference_mode():
                    other = torch.cat([self.ext(x)[0].float().cpu() for x in real(self.data, m, self.bs, n_ref)])
            tag = "_baseline" if m == self.n == n_ref else f"_baseline_n{m}"
            self._baseline = {f"{self.name}_{k}{tag}": v for k, v in prdc(feats, other, self.k).items()}
        return self._baseline

    def __call__(self, sampler, step: int) -> dict[str, float]:
        ref = self.reference()
        out = {f"{self.name}_{k}": v for k, v in prdc(ref["feats"], self.generated(sampler, step).feats, self.k).items()}
        return out | self.baseline(ref)


def _points(data, what: str):
    if not hasattr(data, "centers"):
        raise ConfigError(f"{what} needs a 2D mixture dataset (ring8, grid25); '{data.info.name}' has no mode centers: "
                          "use fid_clf or fid for images")
    return data.centers, data.std


def _sample(sampler, n: int, seed: int, device: torch.device) -> torch.Tensor:
    return torch.cat(list(generated(sampler, n, seed, device)))


class ModeCoverage:
    """VEEGAN/PacGAN mode coverage of a 2D mixture over ``num_samples`` (2,500) samples."""

    def __init__(self, data, device="cpu", name: str = "modes", num_samples: int = 2500, num_std: float = 3.0,
                 min_fraction: float = 0.2, seed: int = 0):
        self.centers, self.std = _points(data, name)
        self.name, self.n, self.num_std, self.min_fraction, self.seed = name, num_samples, num_std, min_fraction, seed
        self.device = torch.device(device)

    def __call__(self, sampler, step: int) -> dict[str, float]:
        x = _sample(sampler, self.n, self.seed, self.device)
        r = mode_coverage(x, self.centers, self.std, self.num_std, self.min_fraction)
        return {self.name: r["modes"], f"{self.name}_hq_percent": r["hq_percent"], f"{self.name}_reverse_kl": r["reverse_kl"]}


class StackedModes:
    """Stacked MNIST: the digit classifier on each of the three channels gives one of 1,000
    modes; reports modes found and KL to uniform over ``num_samples`` (26,000) samples."""

    def __init__(self, data, device="cpu", name: str = "stacked_modes", num_samples: int = 26_000,
                 cache_dir: str = "~/.cache/ganexp", seed: int = 0, source: str = "digits",
                 root: str = "~/.cache/ganexp/data"):
        if not data.info.is_image or data.info.channels != 3:
            raise ConfigError(f"{name} needs 3-channel stacked digits (dataset=stacked_mnist); '{data.info.name}' "
                              f"has shape {list(data.info.shape)}")
        self.device, self.resolution, self.source, self.root = torch.device(device), data.info.resolution, source, root
        self.name, self.n, self.seed, self.cache_dir, self.ext = name, num_samples, seed, cache_dir, None

    def __call__(self, sampler, step: int) -> dict[str, float]:
        if self.ext is None:  # single-channel digits at the dataset's resolution, loaded on first use
            from ganexp.data.stacked import digit_source

            ref = digit_source(self.source, self.resolution, self.root, False).to(self.device)
            self.ext = get_extractor("clf", ref, self.device, self.cache_dir, self.seed)
        labels = []
        with torch.inference_mode():
            for x in generated(sampler, self.n, self.seed, self.device):
                d = self.ext(x.reshape(-1, 1, *x.shape[2:]))[1].argmax(1).view(len(x), 3)
                labels.append(stacked_labels(d).cpu())
        r = stacked_mode_coverage(torch.cat(labels))
        return {self.name: r["modes"], f"{self.name}_kl": r["kl"]}


class ACGANAccuracy:
    """D's auxiliary class head (``discriminator.cond=acgan``) scored on ``num_samples`` real images
    against their labels (``<name>_real``) and on as many generated ones against the labels they
    were generated for (``<name>_fake``), with D in eval mode."""

    def __init__(self, data, D=None, device="cpu", name: str = "acgan_acc", num_samples: int = 10_000,
                 batch_size: int = 500, seed: int = 0):
        if D is None or getattr(D, "classifier", None) is None:
            raise ConfigError(f"{name} scores D's auxiliary class head and this discriminator has none: "
                              "train with conditional=true discriminator.cond=acgan")
        self.D, self.data, self.device = D, data, torch.device(device)
        self.name, self.n, self.bs, self.seed = name, num_samples, batch_size, seed

    def __call__(self, sampler, step: int) -> dict[str, float]:
        was = self.D.training
        self.D.eval()
        try:
            real = classifier_accuracy(self.D, ((x.to(self.device), y.to(self.device))
                                                for x, y in self.data.real_batches(self.n, self.bs)))
            devices = [self.device.index or 0] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):  # the same latents and labels at every evaluation
                torch.manual_seed(self.seed)
                fake = classifier_accuracy(self.D, sampler.batches(self.n))
        finally:
            self.D.train(was)
        return {f"{self.name}_real": real, f"{self.name}_fake": fake}


class KDEPlot:
    """Kernel-density plot of generated 2D samples beside the real density (an image, no numbers)."""

    def __init__(self, data, device="cpu", name: str = "kde", num_samples: int = 2500, seed: int = 0):
        if data.info.is_image or data.info.shape[0] != 2:
            raise ConfigError(f"kde plots 2D points; '{data.info.name}' has shape {list(data.info.shape)}")
        self.real = data.take(num_samples)[0].cpu() if hasattr(data, "take") else data.sample(num_samples)[0].cpu()
        self.name, self.n, self.seed, self.device = name, num_samples, seed, torch.device(device)

    def __call__(self, sampler, step: int) -> dict[str, float]:
        return {}

    def figures(self, sampler, step: int) -> dict:
        return {self.name: kde_figure(_sample(sampler, self.n, self.seed, self.device).cpu(), self.real)}


class Default:
    """The one default-metric policy: what a run scores unless it picks metrics=[...], and what
    ``ganexp eval`` scores when given none. Offline first: classifier FID and IS on labelled images
    (at n = half the dataset, at most 10,000, so the FID floor is at the score's own size), mode
    coverage on 2D mixtures; Inception FID and IS as well on any image dataset when the Inception
    weights are on disk (``eval.inception_weights`` or the torch hub cache: never downloaded for
    the default). Where nothing applies, a note says so once. The logged names are those of the
    metrics it runs (``fid_clf``, ``is_clf``, ``fid``, ``is``, ``modes``)."""

    def __init__(self, data, device="cpu", num_samples: int | None = None, batch_size: int = 500,
                 cache_dir: str = "~/.cache/ganexp", inception_weights: str | None = None, seed: int = 0):
        info, self.metrics, self.note = data.info, [], None
        n = num_samples or max(1, min(10_000, len(data) // 2))
        kw = dict(device=device, num_samples=n, batch_size=batch_size, cache_dir=cache_dir, seed=seed)
        if not info.is_image:
            if hasattr(data, "centers"):
                self.metrics = [ModeCoverage(data, device, "modes", seed=seed)]
            else:
                self.note = f"no default metric for '{info.name}' (2D points without mode centers): choose metrics=[kde]"
        else:
            if info.num_classes:
                self.metrics = [FID("fid_clf", data, **kw), IS("is_clf", data, **kw)]
            if inception_on_disk(inception_weights):
                inc = kw | {"features": "inception", "inception_weights": inception_weights}
                self.metrics += [FID("fid", data, **inc), IS("is", data, **inc)]
            elif not info.num_classes:
                self.note = (f"no default metric for '{info.name}' (images without labels: the offline classifier needs "
                             f"them): choose metrics=[fid] with the Inception weights, or metrics=[] to silence this")
        self.name = "+".join(m.name for m in self.metrics) or "none"
        self.n = max((m.n for m in self.metrics), default=0)

    def __call__(self, sampler, step: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for m in self.metrics:
            out.update(m(sampler, step))
        return out
