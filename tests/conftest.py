"""Shared test helpers: compose the real configs, shrunk to a tiny CPU run in tmp_path."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

import ganexp.schema  # noqa: F401  (registers the typed schema)

torch.set_num_threads(1)  # tiny models: threads cost more than they give, and CI has 2 cores

#: Overrides that make any run tiny: a few steps, small batches, CPU.
TINY = ["device=cpu", "train.steps=4", "train.batch_size=8", "train.log_every=2", "train.sample_every=4",
        "train.ckpt_every=4", "train.num_fixed=16"]


def make_cfg(overrides: list[str], out_dir: Path | None = None, tiny: bool = True) -> DictConfig:
    """The composed train config, as `ganexp train <overrides>` would see it."""
    extra = TINY if tiny else []
    if tiny and not any(o.startswith(("metrics=", "experiment=")) for o in overrides):
        extra = [*extra, "metrics=[]"]  # the default metrics would train a classifier in every tiny run
    if out_dir is not None:
        extra = [*extra, f"out_dir={out_dir}"]
    with initialize_config_module("ganexp.conf", version_base="1.3"):
        return compose("train", overrides=[*extra, *overrides])


@pytest.fixture
def cfg_factory(tmp_path):
    def factory(*overrides: str, tiny: bool = True) -> DictConfig:
        return make_cfg(list(overrides), tmp_path / "run", tiny)

    return factory


def read_events(run_dir: Path):
    """TensorBoard events of a run folder, every scalar and image kept."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc
