"""What a study reads from each run: stats.jsonl, metrics.json with a status on every exit,
HPARAMS with the final metrics, provenance, and the default metrics (issue 11)."""
import json

import pytest
import torch
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from ganexp.engine import checkpoint
from ganexp.build import build_run
from ganexp.build.hparams import override_hparams
from ganexp.engine import train
from ganexp.errors import GanexpError, TrainingDiverged
from ganexp.hooks import Hook
from tests.conftest import make_cfg, read_events

POINTS = ["dataset=ring8", "model=mlp", "latent.dim=2", "generator.hidden=[16]", "discriminator.hidden=[16]"]


def _lines(run_dir):
    return [json.loads(l) for l in (run_dir / "stats.jsonl").read_text().splitlines()]


def _hparams(run_dir):
    acc = read_events(run_dir)
    exp = [e for e in acc.Tensors("_hparams_/experiment")] if "_hparams_/experiment" in acc.Tags()["tensors"] else []
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    (events,) = run_dir.glob("events.out.tfevents.*")
    found = {}
    for ev in EventFileLoader(str(events)).Load():
        for v in ev.summary.value:
            if v.tag.startswith("_hparams_/"):
                found[v.tag] = HParamsPluginData.FromString(v.metadata.plugin_data.content)
    return found, exp


def test_stats_jsonl_holds_every_log_interval_and_evaluation(tmp_path):
    run = build_run(make_cfg([*POINTS, "metrics=[modes]", "eval.every=2", "eval.metrics.modes.num_samples=200"], tmp_path))
    final = train(run)
    lines = _lines(tmp_path)
    logged = [l for l in lines if "loss/d" in l]
    evals = [l for l in lines if "metrics/modes" in l]
    assert [l["step"] for l in logged] == [2, 4] and [l["step"] for l in evals] == [2, 4]
    assert logged[-1]["loss/g"] == pytest.approx(final["loss/g"])
    assert evals[-1]["metrics/modes_reverse_kl"] == pytest.approx(final["metrics/modes_reverse_kl"])
    assert all(b["time"] >= a["time"] > 0 for a, b in zip(lines, lines[1:]))


def test_metrics_json_and_hparams_carry_the_final_metrics(tmp_path):
    train(build_run(make_cfg([*POINTS, "metrics=[modes]", "eval.metrics.modes.num_samples=200"], tmp_path)))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "done" and saved["step"] == 4 and "error" not in saved
    found, _ = _hparams(tmp_path)
    tags = {m.name.tag for m in found["_hparams_/experiment"].experiment.metric_infos}
    assert tags == {"loss/d", "loss/g", "metrics/modes", "metrics/modes_hq_percent", "metrics/modes_reverse_kl"}


class Boom(Hook):
    name = "boom"

    def __init__(self, at, exc):
        self.at, self.exc = at, exc

    def on_g_loss(self, loss, ctx):
        if ctx.step == self.at:
            raise self.exc
        return loss * (float("nan") if self.exc is None else 1.0)


@pytest.mark.parametrize("exc, status, error", [(KeyboardInterrupt, "interrupted", "interrupted at step 2"),
                                                (RuntimeError("cuda fell over"), "failed", "RuntimeError: cuda fell over")])
def test_metrics_json_records_how_a_run_ended(exc, status, error, tmp_path):
    run = build_run(make_cfg(POINTS, tmp_path))
    run.tricks.append(Boom(2, exc))
    with pytest.raises((GanexpError, RuntimeError)):
        train(run)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == status and saved["step"] == 2 and error in saved["error"]
    assert "loss/d" in saved  # what was logged before the end is kept
    assert "_hparams_/session_start_info" in _hparams(tmp_path)[0]


def test_metrics_json_after_divergence(tmp_path):
    run = build_run(make_cfg(POINTS, tmp_path))
    run.tricks.append(Boom(-1, None))  # every G loss becomes NaN
    with pytest.raises(TrainingDiverged):
        train(run)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "diverged" and "training diverged at step 2" in saved["error"]


def test_resume_continues_time_and_keeps_earlier_metrics(tmp_path):
    cfg = [*POINTS, "metrics=[modes]", "eval.every=4", "eval.metrics.modes.num_samples=200"]
    train(build_run(make_cfg(cfg, tmp_path / "run")))
    t4 = _lines(tmp_path / "run")[-1]["time"]
    assert checkpoint.load(tmp_path / "run")["elapsed"] >= t4
    train(build_run(make_cfg([*cfg, "train.steps=6", "eval.every=100", f"resume={tmp_path / 'run'}"], tmp_path / "x")))
    lines = _lines(tmp_path / "run")
    assert lines[-1]["step"] == 6 and lines[-1]["time"] > t4
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["step"] == 6 and "metrics/modes" in saved  # an evaluation from before the resume
    runs = json.loads((tmp_path / "run" / "provenance.json").read_text())["runs"]
    assert [r["resumed_from_step"] for r in runs] == [0, 4]


def test_provenance_names_the_code_versions_and_device(tmp_path):
    train(build_run(make_cfg(POINTS, tmp_path)))
    (rec,) = json.loads((tmp_path / "provenance.json").read_text())["runs"]
    assert rec["versions"]["torch"] == torch.__version__.split("+")[0] or rec["versions"]["torch"] == torch.__version__
    assert {"ganexp", "hydra-core"} <= set(rec["versions"]) and rec["device"]["type"] == "cpu" and rec["host"]
    assert rec["git"] is None or (len(rec["git"]["commit"]) == 40 and isinstance(rec["git"]["dirty"], bool))


def test_overrides_become_typed_hparams():
    hp = override_hparams(["loss=lsgan", "optimizer.d.lr=1e-3", "seed=2", "tricks=[ema,r1]", "+x=true",
                           "out_dir=/tmp/a", "hydra.run.dir=b", "device=cpu"])
    assert hp == {"loss": "lsgan", "optimizer.d.lr": 1e-3, "seed": 2, "tricks": "[ema,r1]", "x": True}


# the default metrics ---------------------------------------------------------------------------

def test_default_metrics_score_a_2d_mixture_with_mode_coverage(tmp_path):
    run = build_run(make_cfg([*POINTS, "metrics=[default]"], tmp_path))
    (ev,) = run.evaluators
    assert ev.name == "modes" and ev.n == 2500
    train(run)
    assert {"metrics/modes", "metrics/modes_reverse_kl"} <= set(read_events(tmp_path).Tags()["scalars"])


def test_default_metrics_pick_classifier_fid_and_is_for_labelled_images(tmp_path):
    run = build_run(make_cfg(["metrics=[default]"], tmp_path))
    (ev,) = run.evaluators
    assert ev.name == "fid_clf+is_clf" and [m.n for m in ev.metrics] == [2500, 2500]  # half of the 5,000 digits


def test_default_metrics_say_when_nothing_fits(tmp_path):
    run = build_run(make_cfg(["dataset=swiss_roll", "model=mlp", "latent.dim=2", "metrics=[default]"], tmp_path))
    assert run.evaluators[0].metrics == [] and any("no default metric for 'swiss_roll'" in n for n in run.notes)


def test_the_default_config_scores_itself():
    from hydra import compose, initialize_config_module

    with initialize_config_module("ganexp.conf", version_base="1.3"):
        cfg = compose("train")
    assert list(cfg.eval.metrics) == ["default"] and cfg.eval.every == 500


def test_sweep_job_names_hold_only_the_swept_values(monkeypatch):
    from omegaconf import OmegaConf

    from ganexp.study.sweep import SWEPT_ENV, job_name

    root = OmegaConf.create({"hydra": {"overrides": {"task": ["loss=gan", "train.steps=4", "tricks=[ema,r1]", "seed=1",
                                                               "out_dir=x"]},
                                       "sweeper": {"params": {"tricks": "choice([],[ema,r1])"}}}})
    monkeypatch.setenv(SWEPT_ENV, "loss,seed")
    assert job_name(root) == "loss-gan_tricks-ema-r1_seed-1"
    root.hydra.overrides.task = ["tricks=[]", "optimizer.d.lr=1e-3"]
    monkeypatch.setenv(SWEPT_ENV, "optimizer.d.lr")
    assert job_name(root) == "tricks-none_optimizer.d.lr-1e-3"
