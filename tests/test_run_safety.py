"""No lost or mixed runs: existing run folders, locks, full disks, closed pipes, tiny streamed data."""
from __future__ import annotations

import json
import errno
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganexp.engine import checkpoint
from ganexp.rundir import files
from ganexp.rundir.lock import FolderLocked
from ganexp.build import build_run
from ganexp.build.factory import build_dataset
from ganexp.data import LoaderData
from ganexp.engine import train
from ganexp.errors import DataError, GanexpError
from tests.conftest import make_cfg, read_events

MLP = ["dataset=ring8", "model=mlp", "latent.dim=2"]


def trained_run(out: Path, *overrides: str) -> Path:
    train(build_run(make_cfg([*MLP, *overrides], out)))
    return out


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ------------------------------------------------------------------ 12: existing folders and locks

def test_a_new_run_refuses_a_folder_that_holds_a_run(tmp_path):
    run = trained_run(tmp_path / "run")
    before = (run / "ckpt" / "last.pt").read_bytes()
    with pytest.raises(GanexpError, match=r"already holds a run .*resume=.*overwrite=true"):
        build_run(make_cfg([*MLP, "seed=1"], run))
    assert (run / "ckpt" / "last.pt").read_bytes() == before
    assert len(list(run.glob("events.out.tfevents.*"))) == 1


def test_overwrite_replaces_the_earlier_run(tmp_path):
    run = trained_run(tmp_path / "run")
    (run / "samples" / "step_0000099.png").write_bytes(b"old")
    train(build_run(make_cfg([*MLP, "overwrite=true", "train.steps=2", "train.ckpt_every=2"], run)))
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # one run's curves, not two mixed
    assert [e.step for e in read_events(run).Scalars("loss/g")] == [2]
    assert not (run / "samples" / "step_0000099.png").exists()
    assert checkpoint.load(run)["step"] == 2
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == [2]  # the earlier run's history is gone too
    assert len(json.loads((run / "provenance.json").read_text())["runs"]) == 1


def test_a_fresh_hydra_folder_is_not_an_earlier_run(tmp_path):
    """Hydra writes .hydra/ and train.log into its run folder before any ganexp code runs."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (run / "train.log").write_text("")
    trained_run(run)
    assert (run / "ckpt" / "last.pt").is_file()


def test_a_live_lock_refuses_a_second_run_and_a_resume(tmp_path):
    run = trained_run(tmp_path / "run")
    (run / ".lock").write_text(f"{os.getppid()} {socket.gethostname()}\n")  # a live process on this host
    with pytest.raises(FolderLocked, match=f"in use by another run \\(process {os.getppid()}"):
        build_run(make_cfg([*MLP, "overwrite=true"], run))
    with pytest.raises(FolderLocked, match="in use by another run"):
        build_run(make_cfg([*MLP, "train.steps=8", f"resume={run}"], tmp_path / "x"))
    # a run built before the other one took the lock is refused when it starts
    (run / ".lock").unlink()
    resumed = build_run(make_cfg([*MLP, "train.steps=8", f"resume={run}"], tmp_path / "x"))
    (run / ".lock").write_text(f"{os.getppid()} {socket.gethostname()}\n")
    with pytest.raises(FolderLocked):
        train(resumed)
    assert checkpoint.load(run)["step"] == 4
    assert (run / ".lock").read_text().split()[0] == str(os.getppid())  # someone else's lock is left alone


def test_the_lock_is_held_while_training_and_removed_on_every_exit(tmp_path, monkeypatch):
    seen = []
    real_save = checkpoint.save

    def spy(path, state):
        seen.append((tmp_path / "run" / ".lock").read_text().split()[0])
        real_save(path, state)

    monkeypatch.setattr(checkpoint, "save", spy)
    trained_run(tmp_path / "run")
    assert seen == [str(os.getpid())]
    assert not (tmp_path / "run" / ".lock").exists()

    run = build_run(make_cfg([*MLP, "train.steps=8", f"resume={tmp_path / 'run'}"], tmp_path / "x"))
    monkeypatch.setattr(run.opt_g, "step", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        train(run)
    assert not (tmp_path / "run" / ".lock").exists()


def test_a_stale_lock_is_taken_over_with_a_note(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    pid = dead_pid()
    (run / ".lock").write_text(f"{pid} {socket.gethostname()}\n")
    trained_run(run)
    assert f"took over the stale lock {run / '.lock'} (process {pid}" in capsys.readouterr().out
    assert not (run / ".lock").exists()


# ------------------------------------------------------------------ 16: disk full

class FullDisk:
    """A file that accepts ``room`` bytes and then fails like a full disk."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.f.write(data[:self.room])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def fill_disk(monkeypatch, room: int = 100, only: str = "") -> None:
    real_open = open

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return FullDisk(f, room) if "w" in mode and only in str(path) else f

    monkeypatch.setattr(files, "open", fake_open, raising=False)


def test_disk_full_during_a_checkpoint_is_one_line_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "ckpt" / "last.pt"
    checkpoint.save(path, {"a": torch.ones(1000)})
    before = path.read_bytes()
    fill_disk(monkeypatch)
    with pytest.raises(files.DiskFull) as e:
        checkpoint.save(path, {"a": torch.zeros(1000)})
    msg = str(e.value)
    assert msg.startswith(f"disk full: cannot write {path} (needs ") and "\n" not in msg
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no partial .tmp left
    assert path.read_bytes() == before


def test_too_little_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "free_bytes", lambda p: 10)
    with pytest.raises(files.DiskFull, match=r"needs [\d.]+ kB, 10 bytes free"):
        checkpoint.save(tmp_path / "last.pt", {"a": torch.ones(10)})
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_ends_the_run_in_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    run = build_run(make_cfg([*MLP, "train.steps=4", "train.ckpt_every=2"], tmp_path / "run"))
    saves = []
    real_save = checkpoint.save

    def second_save_fails(path, state):
        saves.append(state["step"])
        if len(saves) == 2:
            fill_disk(monkeypatch, room=10)
        real_save(path, state)

    monkeypatch.setattr(checkpoint, "save", second_save_fails)
    with pytest.raises(GanexpError, match="disk full: cannot write .*last.pt"):
        train(run)
    assert saves == [2, 4]
    assert checkpoint.load(tmp_path / "run")["step"] == 2
    assert not list((tmp_path / "run" / "ckpt").glob(".*tmp"))
    assert not (tmp_path / "run" / ".lock").exists()


def test_atomic_write_removes_its_temp_file_on_any_error(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("old")

    def half(f):
        f.write(b"{")
        raise ValueError("serialiser broke")

    with pytest.raises(ValueError):
        files.atomic_write(target, half)
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"] and target.read_text() == "old"


# ------------------------------------------------------------------ 17: out_dir a file or read-only

def test_out_dir_that_is_a_file_is_one_line(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    with pytest.raises(GanexpError, match=f"out_dir {f} is a file, not a folder"):
        build_run(make_cfg(MLP, f))
    with pytest.raises(GanexpError, match=f"cannot write the run folder {f / 'run'}: {f} is a file, not a folder"):
        build_run(make_cfg(MLP, f / "run"))
    assert f.read_text() == "keep me"


def test_read_only_out_dir_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(files.os, "access", lambda p, mode: False)  # root ignores chmod: simulate
    with pytest.raises(GanexpError, match=f"cannot write the run folder {tmp_path / 'run'}: no permission to write in"):
        build_run(make_cfg(MLP, tmp_path / "run"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 folder anyway")
def test_read_only_folder_for_real(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(GanexpError, match="not writable|permission denied"):
            build_run(make_cfg(MLP, ro / "run"))
    finally:
        ro.chmod(0o755)


def test_write_errors_name_the_cause():
    p = Path("/x/ckpt/last.pt")
    assert "read-only file system" in str(files.write_error(p, OSError(errno.EROFS, "ro")))
    assert "permission denied" in str(files.write_error(p, OSError(errno.EACCES, "no")))


# ------------------------------------------------------------------ 15: streamed data smaller than a batch

@pytest.fixture
def alarm():
    """Fail instead of hanging forever (the old refill loop spun at 100% CPU)."""
    def timeout(*_):
        raise TimeoutError("hung")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def three_images(root: Path) -> Path:
    root.mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (80 * i, 0, 0)).save(root / f"{i}.png")
    return root


def image_folder(root: Path, *overrides: str):
    return build_dataset(make_cfg(["dataset=image_folder", f"dataset.root={root}", "dataset.resolution=16",
                                  *overrides]).dataset)


def test_streamed_data_smaller_than_a_batch_is_refused_not_a_hang(tmp_path, alarm):
    data = image_folder(three_images(tmp_path / "img"), "dataset.num_workers=0")
    with pytest.raises(DataError, match="has 3 samples, fewer than a batch of 8; lower train.batch_size to 3"):
        data.sample(8)
    x, _ = data.sample(3)
    assert x.shape == (3, 3, 16, 16)
    got = sum(len(x) for x, _ in LoaderData(data.dataset, data.info, 0).real_batches(3, 500))
    assert got == 3


def test_a_run_on_too_few_streamed_images_ends_in_one_line(tmp_path, alarm):
    cfg = make_cfg(["dataset=image_folder", f"dataset.root={three_images(tmp_path / 'img')}", "dataset.resolution=16",
                    "dataset.num_workers=0", "generator.ngf=8", "discriminator.ndf=8"], tmp_path / "run")
    with pytest.raises(DataError, match="fewer than a batch of 8"):
        train(build_run(cfg))
    assert not (tmp_path / "run" / ".lock").exists()


@pytest.mark.parametrize("cores, workers", [({0, 1}, 2), (set(range(16)), 4)])
def test_loader_workers_default_to_the_cores_there_are(tmp_path, monkeypatch, cores, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores)
    assert image_folder(three_images(tmp_path / "img")).num_workers == workers
    assert image_folder(tmp_path / "img", "dataset.num_workers=1").num_workers == 1
