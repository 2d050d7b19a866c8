"""Shared test helpers: compose the real configs, shrunk to a tiny CPU run in tmp_path."""
from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

import ganexp.build.schema  # noqa: F401  (registers the typed schema)

torch.set_num_threads(1)  # tiny models: threads cost more than they give, and CI has 2 cores

#: Overrides that make any run tiny: a few steps, small batches, CPU (GANEXP_TEST_DEVICE=cuda: the
#: GPU check runs a subset of the fast tests on the GPU, scripts/gpu_check.sh).
TINY = [f"device={os.environ.get('GANEXP_TEST_DEVICE', 'cpu')}", "train.steps=4", "train.batch_size=8", "train.log_every=2", "train.sample_every=4",
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


def setup_context(G=None, D=None, loss=None, *, batch_size: int = 8, d_steps: int = 1, g_steps: int = 1,
                  dim: int = 4, tricks=(), ranks: int = 1, info=None, opt_d=None):
    """The context a hook's ``setup`` gets when a run is built, for a hook tested on its own."""
    from ganexp.hooks import SetupContext
    from ganexp.losses import NSGAN
    from ganexp.models.latent import Latent

    return SetupContext(G, D, None, opt_d, loss or NSGAN(), list(tricks), info, Latent(dim), torch.device("cpu"),
                        batch_size, ranks, d_steps, g_steps)


@pytest.fixture(scope="session")
def clf_cache(tmp_path_factory):
    """One classifier cache for the whole test session (trained once, ~15 s on 2 cores)."""
    from ganexp.data.digits import digits
    from ganexp.metrics.features import get_extractor

    path = tmp_path_factory.getbasetemp() / "ganexp-cache"
    get_extractor("clf", digits(), torch.device("cpu"), str(path))
    return str(path)


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


#: A citation as the docs write it: "Salimans et al. 2016", "Mirza & Osindero 2014", "Fisher 1936", "ganhacks #8".
CITATION = re.compile(r"[A-Z][^\s,;()]+(?: et al\.| & [A-Z][^\s,;()]+)? (?:19|20)\d\d|ganhacks #\d+")


def plain(text: str) -> str:
    """Whitespace collapsed and accents dropped (Kynkäänniemi == Kynkaanniemi)."""
    text = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split())


def docs_papers(md: str) -> dict[str, list[str]]:
    """{option: the citations in its "paper" column} from a catalogue table in docs/<md>."""
    text = (Path(__file__).resolve().parents[1] / "docs" / md).read_text()
    header = next(ln for ln in text.splitlines() if ln.startswith("|") and "paper" in ln)
    col = [c.strip() for c in header.strip("|").split("|")].index("paper")
    rows = {}
    for ln in text.splitlines():
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        m = re.fullmatch(r"`([a-z0-9_]+)`", cells[0]) if ln.startswith("|") else None
        if m and len(cells) > col:
            rows[m.group(1)] = [plain(c) for c in CITATION.findall(plain(cells[col]))]
    return rows


def fid_by_hand(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID (Heusel et al. 2017) of two feature samples, computed apart from ganexp.metrics: with
    S1 = A A^T and S2 = B B^T (A, B the centred samples over sqrt(n - 1)), the non-zero eigenvalues
    of S1 S2 are the squared singular values of A^T B, so tr sqrt(S1 S2) is its nuclear norm."""
    a, b = a.double(), b.double()
    A = (a - a.mean(0)).T / (len(a) - 1) ** 0.5
    B = (b - b.mean(0)).T / (len(b) - 1) ** 0.5
    trace_sqrt = torch.linalg.matrix_norm(A.T @ B, "nuc")
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + (A ** 2).sum() + (B ** 2).sum() - 2 * trace_sqrt)


def is_by_hand(logits: torch.Tensor, splits: int) -> float:
    """Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) per contiguous split, averaged."""
    scores = []
    for p in logits.double().softmax(1).chunk(splits):
        scores.append((p * (p.log() - p.mean(0, keepdim=True).log())).sum(1).mean().exp())
    return float(torch.stack(scores).mean())
