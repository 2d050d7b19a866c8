"""torchvision-backed datasets on small files written here in the real on-disk formats.

MNIST reads raw IDX files with no checksum. CIFAR-10 and CelebA check the md5 of each file
against the published archives; tests cannot ship those, so they set the class's expected
md5 sums to those of the files they wrote: torchvision's own integrity check still runs
(and a corrupted file still fails it), only the reference values differ.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import io
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets as tvd

from ganexp.build.factory import build_dataset
from ganexp.errors import ConfigError, DataError
from tests.conftest import make_cfg

FIX = "set dataset.download=true on a machine with internet, or point dataset.root=PATH at an existing copy"


def load(option: str, *overrides: str):
    """The dataset exactly as build_run makes it from ``dataset=<option>``."""
    return build_dataset(make_cfg([f"dataset={option}", *overrides]).dataset)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- MNIST (IDX files)

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


@pytest.mark.parametrize("option, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_sets_load_as_uint8_on_device_with_labels(tmp_path, option, folder):
    files = write_mnist(tmp_path, folder)
    data = load(option, f"dataset.root={tmp_path}")
    x, y = files["train"]
    assert data.x.dtype == torch.uint8 and data.x.shape == (40, 1, 28, 28)
    assert torch.equal(data.x[:, 0], torch.from_numpy(x)) and torch.equal(data.y, torch.from_numpy(y).long())
    assert (data.info.kind, data.info.shape, data.info.num_classes) == ("image", (1, 28, 28), 10)
    batch, labels = data.take(40)
    assert batch.dtype == torch.float32 and batch.min() >= -1 and batch.max() == 1.0
    assert torch.allclose(batch[:, 0, 5, 5], labels.float() * 25 / 127.5 - 1)  # [0, 255] -> [-1, 1]
    test = load(option, f"dataset.root={tmp_path}", "dataset.split=test")
    assert len(test) == 10 and torch.equal(test.y, torch.from_numpy(files["t10k"][1]).long())


def test_mnist_resolution_is_a_dataset_setting(tmp_path):
    write_mnist(tmp_path)
    data = load("mnist", f"dataset.root={tmp_path}", "dataset.resolution=16")
    assert data.x.shape == (40, 1, 16, 16) and data.info.shape == (1, 16, 16)


def test_mnist_missing_offline_says_where_and_what_to_do(tmp_path):
    with pytest.raises(DataError) as e:
        load("mnist", f"dataset.root={tmp_path}")
    assert str(e.value) == f"mnist not found or corrupted in {tmp_path}/MNIST/raw: {FIX}"


def test_mnist_corrupt_file_names_the_folder(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST/raw/train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")  # truncated header
    with pytest.raises(DataError, match=f"mnist: cannot read the files in {tmp_path}/MNIST/raw .*delete them"):
        load("mnist", f"dataset.root={tmp_path}")


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    """A download that cannot connect (a closed local port: nothing leaves this machine)."""
    monkeypatch.setattr(tvd.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataError) as e:
        load("mnist", f"dataset.root={tmp_path}", "dataset.download=true")
    msg = str(e.value)
    assert msg.startswith(f"mnist: download into {tmp_path}/MNIST/raw failed (Error downloading ") and "\n" not in msg
    assert "check the network" in msg


# ---------------------------------------------------------------- CIFAR-10 (python batches)

def write_cifar(root: Path, per_batch: int = 4, monkeypatch=None) -> np.ndarray:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: pickled dicts, rows of
    1024 R, 1024 G, 1024 B values. Returns the training images as (N, 3, 32, 32)."""
    folder = root / tvd.CIFAR10.base_folder
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
        monkeypatch.setattr(tvd.CIFAR10, "train_list", [[f"data_batch_{k}", md5(folder / f"data_batch_{k}")] for k in range(1, 6)])
        monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
        monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": md5(folder / "batches.meta")})
    return np.concatenate(train)


def test_cifar10_loads_channels_first_exactly(tmp_path, monkeypatch):
    x = write_cifar(tmp_path, monkeypatch=monkeypatch)
    data = load("cifar10", f"dataset.root={tmp_path}")
    assert data.x.shape == (20, 3, 32, 32) and data.x.dtype == torch.uint8
    assert torch.equal(data.x, torch.from_numpy(x))
    assert data.y.tolist() == [(i + j) % 10 for i in range(5) for j in range(4)]
    assert (data.info.shape, data.info.num_classes) == ((3, 32, 32), 10)
    small = load("cifar10", f"dataset.root={tmp_path}", "dataset.resolution=16", "dataset.split=test")
    assert small.x.shape == (4, 3, 16, 16)


def test_cifar10_corrupted_batch_fails_the_checksum(tmp_path, monkeypatch):
    write_cifar(tmp_path, monkeypatch=monkeypatch)
    with open(tmp_path / "cifar-10-batches-py/data_batch_3", "ab") as f:
        f.write(b"x")
    with pytest.raises(DataError) as e:
        load("cifar10", f"dataset.root={tmp_path}")
    assert str(e.value) == f"cifar10 not found or corrupted in {tmp_path}/cifar-10-batches-py: {FIX}"


def test_cifar10_genuine_checksums_are_enforced(tmp_path):
    """Without the test's checksums, files that are not the published ones are refused."""
    write_cifar(tmp_path)
    with pytest.raises(DataError, match="cifar10 not found or corrupted in"):
        load("cifar10", f"dataset.root={tmp_path}")


# ---------------------------------------------------------------- CelebA (folder + attribute files)

ATTRS = ["Male", "Smiling", "Young"]


def write_celeba(root: Path, monkeypatch, n: int = 6) -> list[list[int]]:
    """root/celeba/img_align_celeba/00000k.jpg plus the five list files in CelebA's layout.
    Smiling faces are white, the others black; partition 0 (train) for the first 4."""
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
    monkeypatch.setattr(tvd.CelebA, "file_list", [(fid, md5(base / f) if f in files else m, f)
                                                  for fid, m, f in tvd.CelebA.file_list])
    return attrs


def test_celeba_streams_faces_with_an_attribute_label(tmp_path, monkeypatch):
    attrs = write_celeba(tmp_path, monkeypatch)
    data = load("celeba", f"dataset.root={tmp_path}", "dataset.resolution=16", "dataset.attribute=Smiling",
                "dataset.num_workers=0")
    assert len(data) == 6 and (data.info.shape, data.info.num_classes) == ((3, 16, 16), 2)
    x, y = data.sample(6)
    assert x.shape == (6, 3, 16, 16) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    assert sorted(y.tolist()) == sorted(int(a[1] == 1) for a in attrs)
    assert torch.equal(x.mean((1, 2, 3)) > 0, y == 1)  # the label travels with its own image
    train = load("celeba", f"dataset.root={tmp_path}", "dataset.split=train", "dataset.num_workers=0")
    assert len(train) == 4 and train.info.num_classes == 0 and train.sample(2)[1] is None


def test_celeba_missing_or_unknown_attribute(tmp_path, monkeypatch):
    with pytest.raises(DataError) as e:
        load("celeba", f"dataset.root={tmp_path}")
    assert str(e.value) == f"celeba not found or corrupted in {tmp_path}/celeba: {FIX}"
    write_celeba(tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="'Bald' is not a CelebA attribute; choose one of"):
        load("celeba", f"dataset.root={tmp_path}", "dataset.attribute=Bald")
    with pytest.raises(ConfigError, match="dataset.split for celeba must be one of all, train, valid, test; got 'val'"):
        load("celeba", f"dataset.root={tmp_path}", "dataset.split=val")


@pytest.mark.skipif(__import__("importlib").util.find_spec("gdown") is not None, reason="would reach Google Drive")
def test_celeba_download_without_gdown_says_so(tmp_path):
    with pytest.raises(DataError, match=r"celeba: download into .*/celeba failed \(To download files from GDrive, 'gdown'"):
        load("celeba", f"dataset.root={tmp_path}", "dataset.download=true")


# ---------------------------------------------------------------- LSUN (LMDB)

def test_lsun_without_lmdb_says_pip_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb -> ImportError, as when it is not installed
    with pytest.raises(DataError) as e:
        load("lsun", f"dataset.root={tmp_path}")
    assert str(e.value) == "lsun is stored as LMDB and needs the package lmdb: pip install lmdb"


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


def test_lsun_category_folders_and_labels(tmp_path, monkeypatch):
    """The path logic with a stand-in for lmdb (not installed here): <category>_<split>_lmdb per category."""
    def jpeg(grey):
        buf = io.BytesIO()
        Image.new("RGB", (40, 30), (grey,) * 3).save(buf, "JPEG")
        return buf.getvalue()

    monkeypatch.setitem(sys.modules, "lmdb", fake_lmdb({b"a": jpeg(0), b"b": jpeg(0)}))
    monkeypatch.chdir(tmp_path)  # torchvision's LSUN writes a key cache into the working directory
    with pytest.raises(DataError) as e:
        load("lsun", f"dataset.root={tmp_path}", "dataset.category=tower")
    assert str(e.value).startswith(f"lsun: no LMDB database at {tmp_path}/tower_train_lmdb/data.mdb; download "
                                   "tower_train_lmdb.zip with the LSUN script")
    for c in ("bedroom", "tower"):
        (tmp_path / f"{c}_train_lmdb").mkdir()
        (tmp_path / f"{c}_train_lmdb/data.mdb").write_bytes(b"")
    one = load("lsun", f"dataset.root={tmp_path}", "dataset.resolution=16", "dataset.num_workers=0")
    x, y = one.sample(2)
    assert x.shape == (2, 3, 16, 16) and y is None and torch.allclose(x, torch.full_like(x, -1.0), atol=0.05)
    two = load("lsun", f"dataset.root={tmp_path}", "dataset.category=[bedroom,tower]", "dataset.num_workers=0")
    assert len(two) == 4 and two.info.num_classes == 2 and sorted(two.sample(4)[1].tolist()) == [0, 0, 1, 1]
