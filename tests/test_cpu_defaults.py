"""The CPU defaults decided from measurement (docs/performance.md, "CPU defaults"): image models in
channels_last on the CPU, one thread for small models, each overridable."""
from __future__ import annotations

import pytest
import torch

from ganexp.build import build_run
from ganexp.errors import ConfigError
from tests.conftest import make_cfg


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _conv_weight(run):
    return next(m.weight for m in run.D.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)


def test_image_models_are_channels_last_on_the_cpu_unless_turned_off(tmp_path):
    w = _conv_weight(build_run(make_cfg([], tmp_path / "a")))
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    w = _conv_weight(build_run(make_cfg(["train.channels_last=false"], tmp_path / "b")))
    assert w.is_contiguous()


def test_small_models_train_on_one_thread_and_train_threads_wins(tmp_path, threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    mlp = ["dataset=ring8", "model=mlp"]
    torch.set_num_threads(2)
    build_run(make_cfg(mlp, tmp_path / "a"))
    assert torch.get_num_threads() == 1  # a 2D MLP GAN: well under 200k parameters
    torch.set_num_threads(2)
    build_run(make_cfg([], tmp_path / "b"))  # DCGAN: over 200k parameters, torch's count stays
    assert torch.get_num_threads() == 2
    build_run(make_cfg([*mlp, "train.threads=2"], tmp_path / "c"))
    assert torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's choice is kept
    build_run(make_cfg(mlp, tmp_path / "d"))
    assert torch.get_num_threads() == 2
    with pytest.raises(ConfigError, match=r"^train.threads must be >= 1 or null, got 0$"):
        build_run(make_cfg(["train.threads=0"], tmp_path / "e"))
