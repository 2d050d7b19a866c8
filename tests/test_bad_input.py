"""Every bad input a new user types gets one line naming what to change, a non-zero exit, no
traceback, and leaves an existing run folder exactly as it was. The commands run as typed, through
the `ganexp` entry point (in this process, for speed; a few also as real subprocesses)."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ganexp.cli.main import main

DATA = Path(__file__).parent / "data"
GANEXP = str(Path(sys.executable).with_name("ganexp"))


def ganexp(capsys, monkeypatch, *args: str) -> tuple[int, list[str]]:
    """Exit code and the non-empty lines printed (stdout and stderr) of `ganexp ARGS`."""
    monkeypatch.setattr(sys, "argv", ["ganexp", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, [line for line in (out.out + out.err).splitlines() if line.strip()]


def one_line(code: int, lines: list[str], *fragments: str) -> None:
    assert code not in (0, None), lines
    assert len(lines) == 1 and not any("Traceback" in ln for ln in lines), lines
    assert all(f in lines[0] for f in fragments), lines


def checksum(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def run(tmp_path) -> Path:
    """A run folder with a checkpoint (the committed ring8 MLP)."""
    d = tmp_path / "run"
    (d / "ckpt").mkdir(parents=True)
    shutil.copy(DATA / "pre_wings_ring8_mlp.pt", d / "ckpt" / "last.pt")
    return d


@pytest.fixture
def read_only(tmp_path):
    """A read-only file system (a tmpfs remounted ro) holding a run folder; skipped where this
    process may not mount."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("mounting a read-only file system needs root")
    try:
        (mnt / "run" / "ckpt").mkdir(parents=True)
        shutil.copy(DATA / "pre_wings_ring8_mlp.pt", mnt / "run" / "ckpt" / "last.pt")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)])


# --- sample and eval ----------------------------------------------------------------------------

@pytest.mark.parametrize("n, fragment", [("-1", "n must be a whole number >= 1, got -1"),
                                         ("0", "n must be a whole number >= 1, got 0"),
                                         ("abc", "n must be a whole number >= 1, got 'abc'")])
def test_sample_refuses_a_bad_count(n, fragment, run, capsys, monkeypatch):
    before = checksum(run)
    one_line(*ganexp(capsys, monkeypatch, "sample", f"ckpt={run}", f"n={n}", "device=cpu"), fragment)
    assert checksum(run) == before


@pytest.mark.parametrize("n", ["0", "-5"])
def test_eval_refuses_a_bad_sample_count_and_makes_no_folder(n, run, capsys, monkeypatch):
    before = checksum(run)
    one_line(*ganexp(capsys, monkeypatch, "eval", f"ckpt={run}", f"num_samples={n}", "device=cpu"),
             f"num_samples must be a whole number >= 1, got {n}")
    assert checksum(run) == before and not (run / "eval").exists()


@pytest.mark.parametrize("cmd", ["sample", "eval"])
def test_sample_and_eval_without_a_checkpoint_say_which_option(cmd, capsys, monkeypatch):
    one_line(*ganexp(capsys, monkeypatch, cmd), f"which checkpoint? ganexp {cmd} ckpt=")


def test_sample_into_a_path_through_a_file(run, tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("x")
    before = checksum(run)
    one_line(*ganexp(capsys, monkeypatch, "sample", f"ckpt={run}", f"out={tmp_path / 'afile' / 'x.png'}", "device=cpu"),
             "is a file, not a folder", "give out=PATH")
    assert checksum(run) == before


def test_sample_and_eval_of_a_read_only_run_point_at_out(read_only, tmp_path, capsys, monkeypatch):
    run = read_only / "run"
    before = checksum(run)
    one_line(*ganexp(capsys, monkeypatch, "sample", f"ckpt={run}", "device=cpu"), "read-only file system", "give out=PATH")
    one_line(*ganexp(capsys, monkeypatch, "eval", f"ckpt={run}", "device=cpu", "num_samples=100"),
             "read-only file system", "give out=PATH")
    code, _ = ganexp(capsys, monkeypatch, "sample", f"ckpt={run}", "device=cpu", "n=4", f"out={tmp_path / 's.npy'}")
    assert code == 0 and (tmp_path / "s.npy").is_file()  # a shared, read-only checkpoint samples with out=
    assert checksum(run) == before


# --- where a run goes ---------------------------------------------------------------------------

def test_train_into_a_read_only_file_system(read_only, capsys, monkeypatch):
    for out_dir in (read_only / "new", read_only):  # a folder in it, and the mount itself
        one_line(*ganexp(capsys, monkeypatch, "train", f"out_dir={out_dir}", "train.steps=2"),
                 "read-only file system", "out_dir=PATH")


def test_resume_of_a_run_on_a_read_only_file_system(read_only, capsys, monkeypatch):
    run = read_only / "run"
    before = checksum(run)
    one_line(*ganexp(capsys, monkeypatch, "train", f"resume={run}", "train.steps=30"),
             f"cannot continue the run in {run}: {run} is on a read-only file system")
    assert checksum(run) == before


def test_a_refused_resume_writes_nothing_into_the_run(tmp_path, capsys, monkeypatch):
    """A checkpoint that does not fit the options is refused before Hydra or ganexp write anything."""
    run = tmp_path / "run"
    code, _ = ganexp(capsys, monkeypatch, "train", "device=cpu", f"out_dir={run}", "experiment=ring8_mlp",
                     "train.steps=2", "metrics=[]", "train.sample_every=0")
    assert code == 0
    before = checksum(run)
    one_line(*ganexp(capsys, monkeypatch, "train", "device=cpu", f"resume={run}", "train.steps=4", "loss=hinge"),
             "the checkpoint does not fit this config: loss differs")
    assert checksum(run) == before


def test_an_attempt_that_trained_nothing_does_not_block_its_folder(tmp_path, capsys, monkeypatch):
    """A job that failed before step 0 left metrics.json (status failed, no step) and an empty event
    file: the fixed command takes the folder. One that trained (a logged step) is refused."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"status": "failed", "error": "train.batch_size=0 ..."}')
    (run / "events.out.tfevents.1.host.1.0").write_bytes(b"")
    base = ["train", "device=cpu", f"out_dir={run}", "experiment=ring8_mlp", "metrics=[]", "train.sample_every=0",
            "train.steps=2"]
    code, lines = ganexp(capsys, monkeypatch, *base)
    assert code == 0, lines
    assert any("removed what an attempt that trained nothing left: events.out.tfevents.1.host.1.0, metrics.json" in ln
               for ln in lines)
    assert not (run / "events.out.tfevents.1.host.1.0").exists()
    one_line(*ganexp(capsys, monkeypatch, *base), f"run folder {run} already holds a run")


def test_a_full_disk_under_tensorboards_writer_is_one_line(tmp_path, capsys, monkeypatch):
    """TensorBoard writes events from a thread of its own; a full disk there ends the run with the
    one line ganexp gives every full disk, after the lines the run printed until then."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)]).returncode:
        pytest.skip("mounting a small file system needs root")
    try:
        (mnt / "pad").write_bytes(b"\0" * 540 * 1024)  # leaves about 60 kB
        code, lines = ganexp(capsys, monkeypatch, "train", "device=cpu", f"out_dir={mnt / 'run'}", "experiment=ring8_mlp",
                             "generator.hidden=[16]", "discriminator.hidden=[16]", "metrics=[]", "train.steps=400",
                             "train.log_every=1", "train.sample_every=0", "train.ckpt_every=0")
    finally:
        subprocess.run(["umount", str(mnt)])
    assert code == 2 and not any("Traceback" in ln or "Logging error" in ln for ln in lines), lines[-20:]
    assert lines[-1].startswith(f"error: disk full: cannot write {mnt / 'run'}"), lines[-3:]


# --- options --------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["+train.stpes=10"], "unknown option 'train.stpes': train has no 'stpes'; did you mean train.steps=10?"),
    (["train.stpes=10"], "did you mean train.steps=10?"),
    (["eval.every=abc"], "eval.every=abc: eval.every takes a whole number"),
    (["optimizer.d.lr=abc"], "optimizer.d.lr=abc: optimizer.d.lr takes a number"),
    (["train.steps=1.5"], "train.steps=1.5: train.steps takes a whole number"),
    (["loss=nope"], "loss=nope: no option 'nope'; choose one of gan, hinge,"),
    (["model=nope", "--cfg", "job"], "model=nope: no option 'nope'; choose one of dcgan, mlp, resnet"),
    (["-m", "dataset=digits,nope"], "dataset=digits,nope: no option 'nope'; choose one of"),
    (["tricks=nope"], "tricks=nope: no option 'nope'; choose one of acgan,"),
    (["experiment=nope", "--cfg", "job"], "experiment=nope: no option 'nope'; choose one of"),
    (["-m", "hparams_search=nope"], "hparams_search=nope: no option 'nope'; choose one of digits_lr, ring8_lr"),
    (["generator.attention=7", "model=mlp", "--cfg", "job"],
     "generator.attention: the generator chosen has no option 'attention' (the generator options that have it: dcgan, resnet"),
    (["dataset.subset=0.5", "dataset=ring8", "model=mlp", "--cfg", "job"],
     "dataset.subset: the dataset chosen has no option 'subset' (the dataset options that have it: celeba, cifar10, digits"),
    (["train.steps=0"], "train.steps must be >= 1 (a run of 0 steps trains nothing; `ganexp eval ckpt=RUN` scores a checkpoint)"),
])
def test_a_wrong_option_is_one_line(args, fragment, tmp_path, capsys, monkeypatch):
    one_line(*ganexp(capsys, monkeypatch, "train", f"hydra.run.dir={tmp_path / 'run'}", *args), fragment)


def test_a_corrupt_checkpoint_is_one_line_without_a_warning(tmp_path, capsys, monkeypatch):
    (tmp_path / "run" / "ckpt").mkdir(parents=True)
    (tmp_path / "run" / "ckpt" / "last.pt").write_bytes(b"\x80\x05not a checkpoint")
    one_line(*ganexp(capsys, monkeypatch, "sample", f"ckpt={tmp_path / 'run'}", "device=cpu"), "cannot read checkpoint")


def test_sweep_folder_names_keep_a_minus_sign():
    from omegaconf import OmegaConf

    from ganexp.study.sweep import job_name

    cfg = OmegaConf.create({"hydra": {"overrides": {"task": ["optimizer.d.lr=-1", "seed=1"]}}})
    assert job_name(cfg) == "optimizer.d.lr--1_seed-1"


def test_under_torchrun_only_rank_0_says_it(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert ganexp(capsys, monkeypatch, "train", "-m", "seed=0,1") == (2, [])
    monkeypatch.setenv("RANK", "0")
    one_line(*ganexp(capsys, monkeypatch, "train", "-m", "seed=0,1"), "a distributed launch trains one run: drop -m")


@pytest.mark.parametrize("args, fragment", [
    (["sample", "ckpt=RUN", "n=0"], "error: n must be a whole number >= 1, got 0"),
    (["eval"], "error: which checkpoint? ganexp eval ckpt="),
    (["train", "-m", "loss=gan,nope"], "error: loss=gan,nope: no option 'nope'"),
    (["train", "generator.attention=7", "model=mlp", "--cfg", "job"], "error: generator.attention: the generator chosen"),
])
def test_as_a_real_process(args, fragment, run):
    r = subprocess.run([GANEXP, *(a.replace("RUN", str(run)) for a in args)], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(fragment), lines
