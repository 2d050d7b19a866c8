"""Shared test helpers: compose the real configs, shrunk to a tiny CPU run in tmp_path; the ganexp
command; tiny datasets written in their real on-disk formats; small models and tricks set up by hand."""
from __future__ import annotations

import hashlib
import importlib.machinery
import io
import json
import os
import pickle
import re
import struct
import sys
import types
import unicodedata
from pathlib import Path

import numpy as np

import pytest
import yaml
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from PIL import Image
from torch import nn

import ganexp.build.schema  # noqa: F401  (registers the typed schema)

torch.set_num_threads(1)  # tiny models: threads cost more than they give, and CI has 2 cores

#: The config folder the package ships (conf/<group>/<option>.yaml).
CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    """The options of a config group, as ``ganexp train <group>=...`` accepts them: conf/<group>/*.yaml, sorted."""
    found = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert found, f"no options in conf/{group}"
    return found


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


def state_differences(a, b, path: str = "") -> list[str]:
    """Where two checkpoint trees differ, tensors compared bitwise (empty when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only in one" for k in a.keys() ^ b.keys()]
        return out + [d for k in a.keys() & b.keys() for d in state_differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in state_differences(x, y, f"{path}[{i}]")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        same = a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
        return [] if same else [f"{path}: differs"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


@pytest.fixture(scope="session")
def clf_cache(tmp_path_factory):
    """One classifier cache for the whole test session: the digit classifier is trained once."""
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

def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one TensorBoard scalar of a run folder."""
    return [(e.step, e.value) for e in read_events(run_dir).Scalars(tag)]


# ---------------------------------------------------------------- spies on a run while it trains

def spy(obj, method: str) -> list:
    """Wrap ``obj.<method>`` on the instance (the engine and the hooks call it through the instance);
    every call appends (args, result)."""
    calls, inner = [], getattr(obj, method)

    def wrapper(*args):
        out = inner(*args)
        calls.append((args, out))
        return out

    setattr(obj, method, wrapper)
    return calls


def training_inputs(module: nn.Module) -> list[tuple]:
    """The positional inputs of every forward of ``module`` in train mode (the training step's calls), detached."""
    seen = []

    def record(m, args):
        if m.training:
            seen.append(tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args))

    module.register_forward_pre_hook(record)
    return seen


def training_outputs(module: nn.Module) -> list[torch.Tensor]:
    """The output of every forward of ``module`` in train mode, detached."""
    seen = []
    module.register_forward_hook(lambda m, args, out: seen.append(out.detach().clone()) if m.training else None)
    return seen


# ---------------------------------------------------------------- the ganexp command in a subprocess

#: The ganexp console script of this interpreter's environment.
GANEXP = str(Path(sys.executable).with_name("ganexp"))
#: Its environment: one thread, Hydra's one-line errors.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


# ---------------------------------------------------------------- datasets written in their real on-disk formats

FIX = "set dataset.download=true on a machine with internet, or point dataset.root=PATH at an existing copy"


def load_dataset(option: str, *overrides: str):
    """The dataset exactly as build_run makes it from ``dataset=<option>``."""
    from ganexp.build.factory import build_dataset

    return build_dataset(make_cfg([f"dataset={option}", *overrides]).dataset)


def md5(path: Path) -> str:
    """A file's md5, as torchvision checks it."""
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_idx(path: Path, arr: np.ndarray) -> None:
    """IDX: big-endian magic (0, 0, type 0x08 = ubyte, ndim), then each dimension as a uint32, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
                     + arr.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 40, n_test: int = 10) -> dict:
    """root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte; image i is filled with 5 * label."""
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = np.repeat(y[:, None, None] * 25, 28 * 28, axis=1).reshape(n, 28, 28).astype(np.uint8)
        x[:, 0, 0] = 255  # a known pixel
        write_idx(root / folder / "raw" / f"{split}-images-idx3-ubyte", x)
        write_idx(root / folder / "raw" / f"{split}-labels-idx1-ubyte", y)
        out[split] = (x, y)
    return out


def write_cifar(root: Path, per_batch: int = 4, monkeypatch=None) -> np.ndarray:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: pickled dicts, rows of
    1024 R, 1024 G, 1024 B values. Returns the training images as (N, 3, 32, 32)."""
    from torchvision import datasets

    folder = root / datasets.CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    train = []
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(per_batch)]
        entry = {"batch_label": name, "labels": labels, "data": x.reshape(per_batch, 3072),
                 "filenames": [f"{name}_{j}.png" for j in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(entry))
        if name != "test_batch":
            train.append(x)
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    if monkeypatch is not None:  # our files' checksums in place of the published ones
        monkeypatch.setattr(datasets.CIFAR10, "train_list",
                            [[f"data_batch_{k}", md5(folder / f"data_batch_{k}")] for k in range(1, 6)])
        monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
        monkeypatch.setattr(datasets.CIFAR10, "meta", {**datasets.CIFAR10.meta, "md5": md5(folder / "batches.meta")})
    return np.concatenate(train)


ATTRS = ["Male", "Smiling", "Young"]


def write_celeba(root: Path, monkeypatch, n: int = 6) -> list[list[int]]:
    """root/celeba/img_align_celeba/00000k.jpg plus the five list files in CelebA's layout.
    Smiling faces are white, the others black; partition 0 (train) for the first 4."""
    from torchvision import datasets

    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    attrs = [[1 if (i + k) % 2 else -1 for k in range(len(ATTRS))] for i in range(n)]
    for name, a in zip(names, attrs):
        Image.new("RGB", (20, 24), (255, 255, 255) if a[1] == 1 else (0, 0, 0)).save(base / "img_align_celeba" / name)

    def table(header, rows):
        return "".join([f"{n}\n", " ".join(header) + "\n"] + [f"{m} " + " ".join(map(str, r)) + "\n" for m, r in zip(names, rows)])

    files = {
        "list_attr_celeba.txt": table(ATTRS, attrs),
        "list_eval_partition.txt": "".join(f"{m} {0 if i < 4 else 2}\n" for i, m in enumerate(names)),
        "identity_CelebA.txt": "".join(f"{m} {i + 10}\n" for i, m in enumerate(names)),
        "list_bbox_celeba.txt": table(["image_id", "x_1", "y_1", "width", "height"], [[1, 2, 3, 4]] * n),
        "list_landmarks_align_celeba.txt": table([f"p{k}" for k in range(10)], [list(range(10))] * n),
    }
    for name, text in files.items():
        (base / name).write_text(text)
    monkeypatch.setattr(datasets.CelebA, "file_list", [(fid, md5(base / f) if f in files else m, f)
                                                       for fid, m, f in datasets.CelebA.file_list])
    return attrs


def fake_lmdb(records: dict[bytes, bytes]) -> types.ModuleType:
    """The slice of py-lmdb that torchvision's LSUN uses: open -> env.begin() -> stat / cursor / get."""
    class Txn:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def stat(self):
            return {"entries": len(records)}

        def cursor(self):
            return types.SimpleNamespace(iternext=lambda keys=True, values=False: iter(list(records)))

        def get(self, key):
            return records[key]

    mod = types.ModuleType("lmdb")
    mod.__spec__ = importlib.machinery.ModuleSpec("lmdb", None)
    mod.open = lambda path, **kw: types.SimpleNamespace(begin=lambda write=False: Txn(), path=path)
    return mod


# ---------------------------------------------------------------- presets

#: Presets on datasets that need files from the network (tested on small fakes in the real format).
DOWNLOAD = {"dcgan_cifar10": "cifar10", "dcgan_celeba": "celeba", "dcgan_lsun": "lsun", "sngan_cifar10": "cifar10",
            "biggan_cifar10": "cifar10", "stylegan2_cifar10": "cifar10", "stylegan2_ada_cifar10": "cifar10"}


def fake_root(name: str, root: Path, monkeypatch) -> list[str]:
    """Write a tiny copy of the preset's dataset under root; the overrides that read it."""
    dataset = DOWNLOAD[name]
    root.mkdir(parents=True)
    if dataset == "cifar10":
        write_cifar(root, monkeypatch=monkeypatch)
    elif dataset == "celeba":
        write_celeba(root, monkeypatch)
    else:
        buf = io.BytesIO()
        Image.new("RGB", (80, 70), (128, 128, 128)).save(buf, "JPEG")
        monkeypatch.setitem(sys.modules, "lmdb", fake_lmdb({b"a": buf.getvalue(), b"b": buf.getvalue()}))
        monkeypatch.chdir(root)  # torchvision's LSUN writes a key cache into the working directory
        (root / "bedroom_train_lmdb").mkdir()
        (root / "bedroom_train_lmdb/data.mdb").write_bytes(b"")
    return [f"dataset.root={root}"] + (["dataset.num_workers=0"] if dataset in ("celeba", "lsun") else [])


def preset_run(name: str, tmp_path: Path, monkeypatch, *overrides: str):
    """The run ``experiment=<name>`` builds, tiny, its dataset faked under tmp_path when it needs a download."""
    from ganexp.build import build_run

    extra = fake_root(name, tmp_path / "data", monkeypatch) if name in DOWNLOAD else []
    return build_run(make_cfg([f"experiment={name}", *extra, *overrides], tmp_path / "run"))


def adam(opt, lr, betas):
    """Whether ``opt`` is Adam with this learning rate and these betas."""
    g = opt.param_groups[0]
    return isinstance(opt, torch.optim.Adam) and g["lr"] == pytest.approx(lr) and tuple(g["betas"]) == pytest.approx(betas)


# ---------------------------------------------------------------- small models and tricks set up by hand

class Linear2D(nn.Module):
    """D(x) = w . x: its input gradient is w everywhere."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x, y=None):
        return x @ self.w


def set_up(trick, **run):
    """A trick after its ``setup``, as a run of these settings would call it (see ``setup_context``)."""
    trick.setup(setup_context(tricks=[trick], **run))
    return trick


def points_G(**kw):
    """A small MLP generator of 2D points (4-dim latents, one hidden layer of 256)."""
    from ganexp.models.mlp import MLPGenerator

    return MLPGenerator(shape=(2,), is_image=False, z_dim=4, hidden=[256], **kw)


# --- run folders as the engine leaves them (for the study tests) ----------------------------------

def write_run(d: Path, overrides, lines, status="done", error=None, tail=""):
    """A run folder as the engine leaves it: metrics.json holds the last logged values (absent: status=None)."""
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (d / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + tail)
    if status is not None:
        final = {"status": status, "step": lines[-1]["step"]}
        for r in lines:
            final.update({k: v for k, v in r.items() if k not in ("step", "time")})
        if error:
            final["error"] = error
        (d / "metrics.json").write_text(json.dumps(final, indent=2, sort_keys=True))


#: A ring losses study: final modes of 5 seeds per loss.
MODES = {"gan": [7, 8, 7, 7, 8], "hinge": [6, 7, 7, 8, 6], "lsgan": [5, 3, 6, 7, 4]}


def ring_study(root):
    """3 losses x 5 seeds with MODES as their final modes."""
    for loss, values in MODES.items():
        for seed, v in enumerate(values):
            write_run(root / f"loss-{loss}_seed-{seed}", [f"loss={loss}", f"seed={seed}"],
                      [{"step": 1000, "time": 10.0 + seed, "metrics/modes": float(v) - 1},
                       {"step": 3000, "time": 30.0 + seed, "metrics/modes": float(v)}])
    return root
