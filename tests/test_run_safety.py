"""No lost or mixed runs: existing run folders, locks, full disks, closed pipes, tiny streamed data."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from PIL import Image

from ganexp.build import _make, build_run
from ganexp.data import LoaderData
from ganexp.engine import train
from ganexp.errors import DataError
from tests.conftest import make_cfg


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
    return _make(make_cfg(["dataset=image_folder", f"dataset.root={root}", "dataset.resolution=16", *overrides]).dataset,
                 "dataset")


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


@pytest.mark.parametrize("cores, workers", [({0, 1}, 2), (set(range(16)), 4)])
def test_loader_workers_default_to_the_cores_there_are(tmp_path, monkeypatch, cores, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores)
    assert image_folder(three_images(tmp_path / "img")).num_workers == workers
    assert image_folder(tmp_path / "img", "dataset.num_workers=1").num_workers == 1
