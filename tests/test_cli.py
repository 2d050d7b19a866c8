"""The `ganexp` command as a user types it, from a directory outside the repo."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image

from ganexp.build import build_run
from ganexp.engine import train
from ganexp.errors import ConfigError, GanexpError
from ganexp.sample.generate import sample
from tests.conftest import ENV, GANEXP, TINY, make_cfg, options, read_events


def ganexp(*args, cwd):
    return subprocess.run([GANEXP, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def test_help_lists_subcommands_and_groups(tmp_path):
    top = ganexp("--help", cwd=tmp_path)
    assert top.returncode == 0 and "train" in top.stdout and "sample" in top.stdout
    groups = ganexp("train", "--help", cwd=tmp_path)
    assert groups.returncode == 0
    for group in ("dataset", "generator", "discriminator", "model", "loss", "optimizer", "tricks"):
        assert f"{group}:" in groups.stdout
    job = ganexp("train", "--cfg", "job", "loss=lsgan", "model=mlp", cwd=tmp_path)
    assert "ganexp.losses.LSGAN" in job.stdout and "MLPGenerator" in job.stdout


@pytest.mark.parametrize("args, fragment", [
    (["loss=nope"], "error: loss=nope: no option 'nope'; choose one of " + ", ".join(options("loss")) + "\n"),
    (["optimizer.d.lr=abc"], "error: optimizer.d.lr=abc: optimizer.d.lr takes a number"),
    (["optimizer.d.lr=-1"], "error: optimizer.d.lr must be > 0, got -1"),
    (["resume=/does/not/exist.pt"], "error: checkpoint not found: /does/not/exist.pt"),
])
def test_user_mistakes_give_a_short_message_not_a_traceback(args, fragment, tmp_path):
    r = ganexp("train", *args, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and fragment in out, out
    assert "Traceback" not in out
    assert not list(tmp_path.glob("outputs/train/*/ckpt"))


def test_unknown_subcommand(tmp_path):
    r = ganexp("fly", cwd=tmp_path)
    assert r.returncode == 2 and "unknown command 'fly'" in r.stderr


def test_sweep_makes_one_folder_per_run(tmp_path):
    r = ganexp("train", "-m", "loss=gan,lsgan,hinge", *TINY, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    runs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert runs == ["0_loss-gan", "1_loss-lsgan", "2_loss-hinge"]  # the swept values only
    for name in runs:
        assert "loss/d" in read_events(tmp_path / "sweep" / name).Tags()["scalars"]


@pytest.mark.slow  # end-to-end CLI runs: the fast set stays under 10 minutes on 2 cores
def test_resume_continues_the_run_with_its_own_options(tmp_path):
    """`resume=RUN train.steps=N` keeps the options the run was launched with; a refused resume
    leaves the run's launch record (.hydra/) as it was."""
    r = ganexp("train", "loss=lsgan", "model=mlp", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    record = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    bad = ganexp("train", "resume=run", "train.steps=8", "loss=hinge", cwd=tmp_path)
    assert bad.returncode == 2 and "loss differs" in bad.stdout and "Traceback" not in bad.stdout + bad.stderr
    assert (tmp_path / "run" / ".hydra" / "config.yaml").read_text() == record
    ok = ganexp("train", "resume=run", "train.steps=8", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "resumed from step 4" in ok.stdout
    assert [e.step for e in read_events(tmp_path / "run").Scalars("loss/g")] == [2, 4, 6, 8]
    records = [p.read_text() for p in (tmp_path / "run" / ".hydra").glob("resume_*/overrides.yaml")]
    assert any("loss=lsgan" in t and "model=mlp" in t and "loss=hinge" not in t for t in records), records
    assert ganexp("train", "resume=run", "train.steps=8", cwd=tmp_path).returncode == 2  # already at step 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    train(build_run(make_cfg(["conditional=true"], out / "run")))
    return out / "run"


def sample_cfg(*overrides):
    with initialize_config_module("ganexp.conf", version_base="1.3"):
        return compose("sample", overrides=["device=cpu", *overrides])


def test_sample_grid_png(trained, tmp_path):
    path = sample(sample_cfg(f"ckpt={trained}", "n=16", f"out={tmp_path / 'g.png'}"))
    assert Image.open(path).size == (4 * 30 + 2, 4 * 30 + 2)  # 4x4 grid of 28px digits, 2px padding


def test_sample_arrays_for_outside_tools(trained, tmp_path):
    npy = np.load(sample(sample_cfg(f"ckpt={trained}", "n=10", f"out={tmp_path / 's.npy'}")))
    assert npy.shape == (10, 28, 28, 1) and npy.dtype == np.uint8
    pt = torch.load(sample(sample_cfg(f"ckpt={trained}", "n=10", "label=3", f"out={tmp_path / 's.pt'}")))
    assert pt["x"].shape == (10, 1, 28, 28) and pt["x"].min() >= -1 and pt["x"].max() <= 1
    assert pt["y"].tolist() == [3] * 10


def test_sample_interpolation_and_truncation(trained, tmp_path):
    path = sample(sample_cfg(f"ckpt={trained}", "mode=interp", "n=2", "steps=5", "interp=lerp", f"out={tmp_path / 'i.pt'}"))
    x = torch.load(path)["x"]
    assert x.shape == (10, 1, 28, 28)
    assert not torch.allclose(x[0], x[4])  # the two ends differ
    t = torch.load(sample(sample_cfg(f"ckpt={trained}", "mode=truncation", "n=8", "truncation=0.5", f"out={tmp_path / 't.pt'}")))
    assert t["x"].shape == (8, 1, 28, 28)
    a = torch.load(sample(sample_cfg(f"ckpt={trained}", "mode=arith", f"out={tmp_path / 'a.pt'}")))
    assert a["x"].shape == (4, 1, 28, 28)


def test_sample_errors(trained, tmp_path):
    with pytest.raises(ConfigError, match="out must end in .png, .npy or .pt"):
        sample(sample_cfg(f"ckpt={trained}", f"out={tmp_path / 'x.gif'}"))
    with pytest.raises(ConfigError, match="label must be in 0..9"):
        sample(sample_cfg(f"ckpt={trained}", "label=12"))
    with pytest.raises(GanexpError, match="checkpoint not found"):
        sample(sample_cfg(f"ckpt={tmp_path}"))


def test_sample_cli_writes_next_to_the_run(trained, tmp_path):
    r = ganexp("sample", f"ckpt={trained}", "n=4", "device=cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (trained / "samples" / "grid.png").is_file()


def test_error_line_keeps_bracketed_hints(capsys):
    from ganexp.cli.main import _fail

    with pytest.raises(SystemExit) as e:
        _fail(GanexpError("offline: use metrics=[fid_clf] or tricks=[r1]"))
    assert e.value.code == 2
    assert "error: offline: use metrics=[fid_clf] or tricks=[r1]" in capsys.readouterr().out


MLP = ["dataset=ring8", "model=mlp", "latent.dim=2"]


def one_line_error(r, fragment):
    out = r.stdout + r.stderr
    assert r.returncode == 2 and fragment in out, out
    assert "Traceback" not in out and len([l for l in out.splitlines() if l.startswith("error:")]) == 1, out


@pytest.mark.slow  # end-to-end CLI runs: the fast set stays under 10 minutes on 2 cores
def test_out_dir_is_the_whole_run_folder_and_train_log_holds_the_run(tmp_path):
    """out_dir=X: Hydra's .hydra/ and train.log go there too, so resume=X finds the launch options;
    train.log holds the run's messages, each printed once on the console."""
    r = ganexp("train", *TINY, *MLP, "loss=lsgan", "out_dir=run", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    run = tmp_path / "run"
    assert (run / ".hydra" / "overrides.yaml").is_file() and not (tmp_path / "outputs").exists()
    log = (run / "train.log").read_text()
    for line in ("run folder: run", "step 2/4", "step 4/4", "eval @ 4: modes ", "done @ 4 in "):
        assert line in log and r.stdout.count(line) == 1, (line, log, r.stdout)
    last = r.stdout.strip().splitlines()[-1]  # the summary: final metrics, wall time, the folder
    assert last.startswith("done @ 4 in ") and " modes " in last and last.endswith("; run  (tensorboard --logdir .)"), last
    ok = ganexp("train", "resume=run", "train.steps=6", cwd=tmp_path)
    assert ok.returncode == 0 and "resumed from step 4" in ok.stdout, ok.stdout + ok.stderr
    assert "resumed from step 4" in (run / "train.log").read_text()
    record = (run / ".hydra" / "config.yaml").read_text()
    again = ganexp("train", *TINY, *MLP, "out_dir=run", cwd=tmp_path)
    one_line_error(again, "error: run folder run already holds a run")
    assert (run / ".hydra" / "config.yaml").read_text() == record  # the launch record is kept


@pytest.mark.slow  # end-to-end CLI runs: the fast set stays under 10 minutes on 2 cores
def test_a_closed_stdout_does_not_end_the_run(tmp_path):
    """`ganexp train ... | head -1`: the reader goes away; training goes on to its checkpoint."""
    p = subprocess.Popen([GANEXP, "train", *TINY, *MLP, "train.steps=30", "train.log_every=1", "train.ckpt_every=30",
                          "out_dir=run"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # like head exiting
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "Logging error" not in err, err
    assert torch.load(tmp_path / "run" / "ckpt" / "last.pt", weights_only=True)["step"] == 30
    log = (tmp_path / "run" / "train.log").read_text()
    assert "stdout was closed" in log and "step 30/30" in log and "done @ 30 in" in log
    s = subprocess.Popen([GANEXP, "sample", "ckpt=run", "n=4", "device=cpu", "out=pts.png"], cwd=tmp_path, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    s.stdout.close()
    err = s.stderr.read().decode()
    assert s.wait(timeout=300) == 0 and "Traceback" not in err, err
    assert (tmp_path / "pts.png").stat().st_size > 0


def test_out_dir_that_is_a_file_is_refused_before_hydra_writes(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    one_line_error(ganexp("train", *TINY, "out_dir=notes.txt", cwd=tmp_path), "out_dir notes.txt is a file, not a folder")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def cli(*args, capsys, monkeypatch) -> tuple[int, str]:
    """`ganexp ARGS` in this process, for mistakes caught before Hydra runs: (exit code, stdout + stderr)."""
    from ganexp.cli.main import main

    monkeypatch.setattr(sys, "argv", ["ganexp", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    return e.value.code, out.out + out.err


def test_commands_and_a_missing_command(capsys, monkeypatch):
    code, out = cli("frobnicate", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "error: unknown command 'frobnicate'; choose one of compare, eval, sample, train" in out
    code, out = cli(capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "usage: ganexp <command>" in out and "error: no command given" in out


@pytest.mark.parametrize("args, fragment", [
    (["tricks=[ema,nope]"], f"error: tricks=[ema,nope]: no option 'nope'; choose one of {', '.join(options('tricks'))}\n"),
    (["metrics=[nope]"], f"error: metrics=[nope]: no option 'nope'; choose one of {', '.join(options('metrics'))}\n"),
    (["los=lsgan"], "error: unknown option 'los'; did you mean loss=lsgan?"),
    (["optimiser.d.lr=1e-3"], "did you mean optimizer.d.lr=1e-3?"),
    (["-m", "seed=0,1", "out_dir=x"], "error: out_dir names one run's folder and -m makes one per job"),
])
def test_misspelled_keys_and_options_name_what_exists(args, fragment, capsys, monkeypatch):
    code, out = cli("train", *args, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and fragment in out and len(out.strip().splitlines()) == 1, out


def test_valid_overrides_pass_the_early_checks():
    """The early checks leave valid input to Hydra: tricks, metrics, groups, nested keys, + and hydra keys."""
    from ganexp.cli import argv as c

    c.check_overrides("train", ["tricks=[ema,r1]", "metrics=[fid_clf]", "experiment=digits_mlp", "dataset.root=/x",
                                 "+extra=1", "hydra.run.dir=y", "loss=gan,lsgan", "overwrite=true", "--cfg", "job"])
    c.check_overrides("sample", ["ckpt=x", "mode=interp"])
    c.check_overrides("eval", ["ckpt=x", "metrics=[kid]"])
