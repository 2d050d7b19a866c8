"""What a run says about its score: a line per evaluation with each metric beside its floor, the
last line's summary, and TensorBoard's HPARAMS columns (the swept keys and the scores first)."""
import json

from ganexp.build import build_run
from ganexp.engine import train
from ganexp.rundir.monitor import Monitor
from ganexp.rundir.tb_hparams import HParams
from ganexp.rundir.summary import eval_line, eval_summary, run_line
from tests.conftest import make_cfg


def test_each_metric_stands_beside_its_floor_or_real_value():
    values = {"fid_clf": 31.2345, "fid_clf_baseline": 1.0912, "is_clf": 6.0234, "is_clf_real": 9.281,
              "kid": 0.01234, "kid_baseline_n2500": 0.0004, "acgan_acc_real": 0.98, "modes": 7.0}
    assert eval_line(1500, values) == ("eval @ 1500: fid_clf 31.2 (floor 1.09)  is_clf 6.02 (real 9.28)  "
                                       "kid 0.0123 (floor at n=2500 0.0004)  acgan_acc_real 0.98  modes 7")


def test_the_last_line_gives_final_metrics_best_evaluation_time_and_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": 500, "time": 1.0, "metrics/fid_clf": 40.0, "metrics/fid_clf_baseline": 1.1},
             {"step": 1000, "time": 2.0, "metrics/fid_clf": 29.5, "metrics/fid_clf_baseline": 1.1},
             {"step": 1000, "time": 2.0, "loss/d": 0.5},
             {"step": 1500, "time": 3.0, "metrics/fid_clf": 31.0, "metrics/fid_clf_baseline": 1.1}]
    (run / "stats.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    final = {"step": 1500, "status": "done", "loss/d": 0.5, "metrics/fid_clf": 31.0, "metrics/fid_clf_baseline": 1.1}
    assert run_line(final, 86.4, run, ("fid_clf", "min")) == (
        f"done @ 1500 in 1 min 26 s: fid_clf 31 (floor 1.1); best fid_clf 29.5 @ 1000 (ckpt/best.pt); "
        f"{run}  (tensorboard --logdir {tmp_path})")
    assert run_line(final, 5.0, run).startswith("done @ 1500 in 5.0 s: fid_clf 31 (floor 1.1); ")
    assert run_line(final, 5.0, run, ("fid_clf", "max")).split("; ")[1] == "best fid_clf 40 @ 500 (ckpt/best.pt)"
    assert eval_summary({"fid_clf": 3.0, "fid_clf_baseline": 1.0}, 2000, 12.34, run / "x.json") == \
        f"eval @ 2000 in 12.3 s: fid_clf 3 (floor 1); wrote {run / 'x.json'}"


def test_a_training_run_prints_every_evaluation(tmp_path, capsys):
    cfg = make_cfg(["dataset=ring8", "model=mlp", "latent.dim=2", "generator.hidden=[16]", "discriminator.hidden=[16]",
                    "metrics=[modes]", "eval.every=2", "eval.metrics.modes.num_samples=256", "train.sample_every=0"],
                   tmp_path / "run")
    train(build_run(cfg))
    out = capsys.readouterr().out
    stats = [json.loads(x) for x in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    evals = [x for x in stats if "metrics/modes" in x]
    assert [x["step"] for x in evals] == [2, 4]
    for x in evals:  # the line holds the values stats.jsonl holds, at 3 significant digits
        kl = x["metrics/modes_reverse_kl"]
        assert f"eval @ {x['step']}: modes {x['metrics/modes']:.0f}  " in out and f"modes_reverse_kl {kl:.3g}" in out


def test_hparams_mark_the_swept_keys_and_put_the_scores_first(tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    mon = Monitor(tmp_path, 4, 2, interactive=False)
    mon.open(0)
    hp = HParams({"loss": "gan", "seed": 3, "batch_size": 64, "d_steps": 1, "dataset": "ring8", "discriminator": "mlp"},
                 swept=["loss", "seed"])
    final = {"loss/d": 1.0, "loss/g": 2.0, "metrics/modes_reverse_kl": 0.1, "metrics/fid_clf_baseline": 1.0,
             "metrics/modes": 7.0, "lr/g": 0.1, "step": 4}
    mon.hparams(hp, final)
    mon.close()
    (events,) = tmp_path.glob("events.out.tfevents.*")
    exp = next(HParamsPluginData.FromString(v.metadata.plugin_data.content).experiment for ev in EventFileLoader(str(events)).Load()
               for v in ev.summary.value if v.tag == "_hparams_/experiment")
    # TensorBoard sorts hparams by (not differs, name) and shows the first five, and the first five metrics
    shown = [i.name for i in sorted(exp.hparam_infos, key=lambda i: (not i.differs, i.name))][:5]
    assert shown[:2] == ["loss", "seed"] and {i.name for i in exp.hparam_infos if i.differs} == {"loss", "seed"}
    assert [m.name.tag for m in exp.metric_infos] == ["metrics/modes", "metrics/modes_reverse_kl", "metrics/fid_clf_baseline",
                                                      "loss/d", "loss/g"]


def test_hparams_outside_a_sweep_mark_nothing():
    from ganexp.build.hparams import hparams

    hp = hparams(make_cfg(["loss=hinge"]))
    assert isinstance(hp, HParams) and hp.swept == () and hp["seed"] == 0
