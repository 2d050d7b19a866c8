"""Feature networks and caches: the digit classifier, cached real statistics, InceptionV3
from a local weights file, and the one-line offline error."""
from __future__ import annotations

import pytest
import torch

from ganexp.data.digits import digits
from ganexp.data.toy import ring
from ganexp.errors import ConfigError, GanexpError
from ganexp.metrics import cache, classifier
from ganexp.metrics.evaluators import FID, IS, KID, PRDC, ModeCoverage, PrecisionRecall
from ganexp.metrics.features import get_extractor
from ganexp.metrics.inception import INCEPTION_FILE, InceptionFeatures
from ganexp.metrics.realdata import real
from ganexp.metrics.fid import fid_from_feats
from tests.conftest import fid_by_hand, is_by_hand


class FixedSampler:
    """Stands in for the engine's Sampler: yields a fixed tensor in batches."""

    def __init__(self, x: torch.Tensor, batch_size: int = 256):
        self.x, self.batch_size = x, batch_size

    def batches(self, n: int):
        for i in range(0, n, self.batch_size):
            yield self.x[i:min(i + self.batch_size, n)], None


@pytest.fixture(scope="module")
def data():
    return digits()


def test_digit_classifier_reaches_95_percent_held_out(clf_cache, data):
    ext = get_extractor("clf", data, torch.device("cpu"), clf_cache)
    assert ext.accuracy >= 0.95
    assert ext.num_features == 128 and ext.num_classes == 10
    x, y = data.take(1000, 2000)
    with torch.inference_mode():
        assert (ext(x)[1].argmax(1) == y).float().mean() >= 0.95


def test_classifier_is_cached_on_disk_and_reused(clf_cache, data, monkeypatch):
    monkeypatch.setattr(classifier, "train_classifier", lambda *a, **k: pytest.fail("retrained a cached classifier"))
    net, acc = classifier.load_or_train(data, clf_cache, cache.dataset_fingerprint(data))
    assert acc == get_extractor("clf", data, torch.device("cpu"), clf_cache).accuracy


def test_classifier_metrics_on_real_digits_match_the_baseline(clf_cache, data):
    real = torch.cat([x for x, _ in data.real_batches(len(data), 1000)])
    sampler = FixedSampler(real[torch.randperm(len(real), generator=torch.Generator().manual_seed(1))])
    kw = dict(data=data, num_samples=2000, cache_dir=clf_cache)
    fid = FID("fid_clf", **kw)(sampler, 0)
    assert fid["fid_clf"] < 3 * fid["fid_clf_baseline"] + 1.0  # real vs real: as close as the baseline
    collapsed = FixedSampler(real[:1].expand(2000, -1, -1, -1))
    assert FID("fid_clf", **kw)(collapsed, 1)["fid_clf"] > 50 * fid["fid_clf"]
    assert 8.5 < IS("is_clf", **kw)(sampler, 0)["is_clf"] <= 10.0
    assert IS("is_clf", **kw)(collapsed, 1)["is_clf"] == pytest.approx(1.0, abs=1e-3)
    assert KID("kid_clf", **kw)(collapsed, 1)["kid_clf"] > 100 * abs(KID("kid_clf", **kw)(sampler, 0)["kid_clf"])
    pr = PrecisionRecall("pr_clf", **kw)(sampler, 0)
    assert pr["pr_clf_precision"] > 0.9 and pr["pr_clf_recall"] > 0.9


def test_prdc_on_the_whole_dataset_takes_its_baseline_from_two_halves(clf_cache, data):
    """eval.num_samples >= the dataset (the train default, 10,000, on 5,000 digits): no real samples are
    left beside the reference, so the real-vs-real PRDC compares its two halves and says their size
    (this crashed the first evaluation of stylegan2_digits with metrics=[prdc_clf])."""
    real = torch.cat([x for x, _ in data.real_batches(len(data), 1000)])
    sampler = FixedSampler(real[torch.randperm(len(real), generator=torch.Generator().manual_seed(1))])
    out = PRDC("prdc_clf", data, num_samples=len(data), cache_dir=clf_cache)(sampler, 0)
    half = len(data) // 2
    assert {f"prdc_clf_{k}_baseline_n{half}" for k in ("precision", "recall", "density", "coverage")} <= set(out)
    assert out[f"prdc_clf_coverage_baseline_n{half}"] > 0.9 and out[f"prdc_clf_precision_baseline_n{half}"] > 0.9
    assert out["prdc_clf_coverage"] > 0.9  # the generated set here is the real digits


def test_real_statistics_are_cached_once_and_reused(clf_cache, data, monkeypatch, tmp_path):
    metric = FID("fid_clf", data, num_samples=300, cache_dir=clf_cache)
    stats = tmp_path / "stats"
    first = cache.reference(data, metric.ext, 300, str(tmp_path))
    files = list(stats.glob("digits-300-*.pt"))
    assert len(files) == 1 and not list(stats.glob(".*tmp"))  # written atomically
    assert first["n_ref"] == 300 and first["n_baseline"] == 300
    metric.ext._refs.clear()  # a new process: only the file remains
    monkeypatch.setattr(cache, "compute_reference", lambda *a, **k: pytest.fail("recomputed cached statistics"))
    again = cache.reference(data, metric.ext, 300, str(tmp_path))
    assert torch.equal(again["mu"], first["mu"]) and again["baseline_fid"] == first["baseline_fid"]


def test_classifier_metrics_need_labels():
    with pytest.raises(ConfigError, match="labelled image dataset.*fid.*modes"):
        FID("fid_clf", ring(num_points=1000))


def test_mode_coverage_of_a_sampler_on_5_of_8_modes():
    """A generator that puts its samples on exactly five of the eight ring modes (and a few
    stragglers far from any) scores 5 modes, and the high-quality share of the samples it put there."""
    data = ring(num_points=1000)
    g = torch.Generator().manual_seed(0)
    on = data.centers[[0, 2, 3, 5, 7]].repeat_interleave(450, 0) + data.std * torch.randn(2250, 2, generator=g)
    x = torch.cat([on, torch.zeros(250, 2)])  # 250 at the centre: nearest to some mode, far from all
    r = ModeCoverage(data, num_samples=2500)(FixedSampler(x[torch.randperm(2500, generator=g)]), 0)
    within = (on - data.centers[[0, 2, 3, 5, 7]].repeat_interleave(450, 0)).norm(dim=1) <= 3 * data.std
    assert r["modes"] == 5.0 and r["modes_hq_percent"] == pytest.approx(100 * within.sum().item() / 2500)
    assert r["modes_hq_percent"] < 90.0  # the 250 at the centre are not high quality


def test_mode_coverage_of_real_ring_points():
    data = ring(num_points=5000)
    r = ModeCoverage(data)(FixedSampler(data.x), 0)
    assert r["modes"] == 8.0
    assert r["modes_hq_percent"] == pytest.approx(100 * (1 - torch.exp(torch.tensor(-4.5)).item()), abs=1.0)
    assert r["modes_reverse_kl"] < 0.01
    with pytest.raises(ConfigError, match="mixture"):
        ModeCoverage(digits())


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A randomly initialised torch-fidelity InceptionV3 state dict (no download), scaled so
    activations neither vanish nor explode through the 94 batch-norm layers."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    mp = pytest.MonkeyPatch()
    mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: None)
    mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
    torch.manual_seed(0)
    net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    mp.undo()
    sd = {k: torch.full_like(v, 2.5) if k.endswith("bn.weight") else v for k, v in net.state_dict().items()}
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(sd, path)
    return str(path)


def test_inception_path_matches_torchmetrics_fid(inception_file):
    from torchmetrics.image.fid import FrechetInceptionDistance

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 1, 28, 28, generator=g) * 2 - 1, torch.rand(6, 1, 28, 28, generator=g) * 2 - 1
    ext = InceptionFeatures(inception_file)
    with torch.inference_mode():
        ours = fid_from_feats(ext(x)[0], ext(y)[0])
    ref = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=inception_file, antialias=False)
    to_u8 = lambda t: ((t + 1) * 127.5).round().to(torch.uint8).expand(-1, 3, -1, -1)  # noqa: E731
    ref.update(to_u8(x), real=True)
    ref.update(to_u8(y), real=False)
    assert ours > 1.0 and ours == pytest.approx(float(ref.compute()), rel=1e-3)


def test_inception_metrics_run_from_a_local_weights_file(inception_file, data, tmp_path):
    fake = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sampler = FixedSampler(fake)
    kw = dict(data=data, num_samples=4, cache_dir=str(tmp_path), inception_weights=inception_file)
    metric = FID("fid", features="inception", **kw)
    fid = metric(sampler, 0)
    assert set(fid) == {"fid", "fid_baseline"} and metric.ext.key.startswith("inception-v3")
    # recomputed apart from the evaluator: the network's pool features of these 4 fakes and of
    # the first 4 real digits of the fixed shuffle
    with torch.inference_mode():
        f_fake, logits = metric.ext(fake)
        f_real, _ = metric.ext(torch.cat(list(real(data, 4, 4))))
    assert f_fake.shape == (4, 2048) and logits.shape == (4, 1008)
    assert fid["fid"] == pytest.approx(fid_by_hand(f_real, f_fake), rel=1e-4)
    # 4 samples make 4 splits of one: each split's marginal is its own prediction, so IS is 1 exactly
    assert IS("is", features="inception", **kw)(sampler, 0)["is"] == pytest.approx(is_by_hand(logits, 4), abs=1e-9)


def test_without_weights_offline_the_error_is_one_line(data, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("GANEXP_OFFLINE", "1")
    with pytest.raises(GanexpError) as e:
        FID("fid", data, features="inception", cache_dir=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and INCEPTION_FILE in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    assert "eval.inception_weights=PATH" in msg and "metrics=[fid_clf]" in msg
    with pytest.raises(GanexpError, match="no such file"):
        FID("fid", data, features="inception", inception_weights=str(tmp_path / "missing.pth"))


def test_stacked_modes_count_digit_triples(clf_cache, data):
    from ganexp.data.base import DataInfo, TensorData
    from ganexp.metrics.evaluators import StackedModes
    from ganexp.metrics.modes import reverse_kl_uniform

    ext = get_extractor("clf", data, torch.device("cpu"), clf_cache)
    x, y = data.take(len(data))
    with torch.inference_mode():
        ok = ext(x)[1].argmax(1) == y  # digits the classifier reads correctly: exact expected counts
    x, y = x[ok], y[ok]
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(len(x), (600, 3), generator=g)
    idx[:, 0] = idx[:300, 0].repeat(2)  # first channel: reuse digits so some triples repeat
    fake = torch.cat([x[idx[:, c]] for c in range(3)], dim=1)
    labels = y[idx[:, 0]] * 100 + y[idx[:, 1]] * 10 + y[idx[:, 2]]
    stacked = TensorData(fake[:10], None, DataInfo("image", (3, 28, 28), 0, "stacked_test"))
    r = StackedModes(stacked, num_samples=600, cache_dir=clf_cache)(FixedSampler(fake), 0)
    assert r["stacked_modes"] == float(len(labels.unique()))
    assert r["stacked_modes_kl"] == pytest.approx(reverse_kl_uniform(torch.bincount(labels, minlength=1000)))
    with pytest.raises(ConfigError, match="3-channel"):
        StackedModes(data)


def test_one_default_policy_adds_inception_when_its_weights_are_on_disk(tmp_path, monkeypatch):
    from ganexp.data import DataInfo, TensorData
    from ganexp.metrics.evaluators import Default
    from ganexp.sample.evaluate import metric_nodes

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    data = digits()
    unlabelled = TensorData(data.x[:100], None, DataInfo("image", (1, 28, 28), 0, "faces"))
    assert Default(data).name == "fid_clf+is_clf" and Default(data).note is None
    assert Default(unlabelled).name == "none" and "no default metric for 'faces'" in Default(unlabelled).note
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / INCEPTION_FILE).write_bytes(b"")  # never loaded: extractors build lazily
    assert Default(data).name == "fid_clf+is_clf+fid+is"
    assert [m.features for m in Default(data).metrics] == ["clf", "clf", "inception", "inception"]
    assert Default(unlabelled).name == "fid+is" and Default(unlabelled).note is None
    # `ganexp eval` with no metrics builds this same policy
    assert metric_nodes(["default"]).default._target_ == "ganexp.metrics.evaluators.Default"
    nodes = metric_nodes(["fid_clf", "modes"])
    assert nodes.fid_clf._target_.endswith("FID") and nodes.modes.num_samples == 2500


def test_connectivity_probe_fails_fast_and_quietly(capfd):
    import time

    from ganexp.metrics.inception import _online

    t0 = time.perf_counter()
    assert _online("host.invalid", timeout=1.0) is False  # .invalid never resolves (RFC 2606)
    assert time.perf_counter() - t0 < 2.5
    time.sleep(0.1)
    assert "Traceback" not in capfd.readouterr().err
