"""torchvision-backed datasets on small files written here in the real on-disk formats.

MNIST reads raw IDX files with no checksum. CIFAR-10 and CelebA check the md5 of each file
against the published archives; tests cannot ship those, so they set the class's expected
md5 sums to those of the files they wrote: torchvision's own integrity check still runs
(and a corrupted file still fails it), only the reference values differ.
"""
from __future__ import annotations

import io
import sys

import pytest
import torch
from PIL import Image
from torchvision import datasets as tvd

from ganexp.errors import ConfigError, DataError
from tests.conftest import FIX, fake_lmdb, load_dataset, write_celeba, write_cifar, write_mnist


# ---------------------------------------------------------------- MNIST (IDX files)

@pytest.mark.parametrize("option, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_sets_load_as_uint8_on_device_with_labels(tmp_path, option, folder):
    files = write_mnist(tmp_path, folder)
    data = load_dataset(option, f"dataset.root={tmp_path}")
    x, y = files["train"]
    assert data.x.dtype == torch.uint8 and data.x.shape == (40, 1, 28, 28)
    assert torch.equal(data.x[:, 0], torch.from_numpy(x)) and torch.equal(data.y, torch.from_numpy(y).long())
    assert (data.info.kind, data.info.shape, data.info.num_classes) == ("image", (1, 28, 28), 10)
    batch, labels = data.take(40)
    assert batch.dtype == torch.float32 and batch.min() >= -1 and batch.max() == 1.0
    assert torch.allclose(batch[:, 0, 5, 5], labels.float() * 25 / 127.5 - 1)  # [0, 255] -> [-1, 1]
    test = load_dataset(option, f"dataset.root={tmp_path}", "dataset.split=test")
    assert len(test) == 10 and torch.equal(test.y, torch.from_numpy(files["t10k"][1]).long())


def test_mnist_resolution_is_a_dataset_setting(tmp_path):
    write_mnist(tmp_path)
    data = load_dataset("mnist", f"dataset.root={tmp_path}", "dataset.resolution=16")
    assert data.x.shape == (40, 1, 16, 16) and data.info.shape == (1, 16, 16)


def test_mnist_missing_offline_says_where_and_what_to_do(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("mnist", f"dataset.root={tmp_path}")
    assert str(e.value) == f"mnist not found or corrupted in {tmp_path}/MNIST/raw: {FIX}"


def test_mnist_corrupt_file_names_the_folder(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST/raw/train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")  # truncated header
    with pytest.raises(DataError, match=f"mnist: cannot read the files in {tmp_path}/MNIST/raw .*delete them"):
        load_dataset("mnist", f"dataset.root={tmp_path}")


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    """A download that cannot connect (a closed local port: nothing leaves this machine)."""
    monkeypatch.setattr(tvd.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataError) as e:
        load_dataset("mnist", f"dataset.root={tmp_path}", "dataset.download=true")
    msg = str(e.value)
    assert msg.startswith(f"mnist: download into {tmp_path}/MNIST/raw failed (Error downloading ") and "\n" not in msg
    assert "check the network" in msg


# ---------------------------------------------------------------- CIFAR-10 (python batches)

def test_cifar10_loads_channels_first_exactly(tmp_path, monkeypatch):
    x = write_cifar(tmp_path, monkeypatch=monkeypatch)
    data = load_dataset("cifar10", f"dataset.root={tmp_path}")
    assert data.x.shape == (20, 3, 32, 32) and data.x.dtype == torch.uint8
    assert torch.equal(data.x, torch.from_numpy(x))
    assert data.y.tolist() == [(i + j) % 10 for i in range(5) for j in range(4)]
    assert (data.info.shape, data.info.num_classes) == ((3, 32, 32), 10)
    small = load_dataset("cifar10", f"dataset.root={tmp_path}", "dataset.resolution=16", "dataset.split=test")
    assert small.x.shape == (4, 3, 16, 16)


def test_cifar10_corrupted_batch_fails_the_checksum(tmp_path, monkeypatch):
    write_cifar(tmp_path, monkeypatch=monkeypatch)
    with open(tmp_path / "cifar-10-batches-py/data_batch_3", "ab") as f:
        f.write(b"x")
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", f"dataset.root={tmp_path}")
    assert str(e.value) == f"cifar10 not found or corrupted in {tmp_path}/cifar-10-batches-py: {FIX}"


def test_cifar10_genuine_checksums_are_enforced(tmp_path):
    """Without the test's checksums, files that are not the published ones are refused."""
    write_cifar(tmp_path)
    with pytest.raises(DataError, match="cifar10 not found or corrupted in"):
        load_dataset("cifar10", f"dataset.root={tmp_path}")


# ---------------------------------------------------------------- CelebA (folder + attribute files)

def test_celeba_streams_faces_with_an_attribute_label(tmp_path, monkeypatch):
    attrs = write_celeba(tmp_path, monkeypatch)
    data = load_dataset("celeba", f"dataset.root={tmp_path}", "dataset.resolution=16", "dataset.attribute=Smiling",
                "dataset.num_workers=0")
    assert len(data) == 6 and (data.info.shape, data.info.num_classes) == ((3, 16, 16), 2)
    x, y = data.sample(6)
    assert x.shape == (6, 3, 16, 16) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    assert sorted(y.tolist()) == sorted(int(a[1] == 1) for a in attrs)
    assert torch.equal(x.mean((1, 2, 3)) > 0, y == 1)  # the label travels with its own image
    train = load_dataset("celeba", f"dataset.root={tmp_path}", "dataset.split=train", "dataset.num_workers=0")
    assert len(train) == 4 and train.info.num_classes == 0 and train.sample(2)[1] is None


def test_celeba_missing_or_unknown_attribute(tmp_path, monkeypatch):
    with pytest.raises(DataError) as e:
        load_dataset("celeba", f"dataset.root={tmp_path}")
    assert str(e.value) == f"celeba not found or corrupted in {tmp_path}/celeba: {FIX}"
    write_celeba(tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="'Bald' is not a CelebA attribute; choose one of"):
        load_dataset("celeba", f"dataset.root={tmp_path}", "dataset.attribute=Bald")
    with pytest.raises(ConfigError, match="dataset.split for celeba must be one of all, train, valid, test; got 'val'"):
        load_dataset("celeba", f"dataset.root={tmp_path}", "dataset.split=val")


@pytest.mark.skipif(__import__("importlib").util.find_spec("gdown") is not None, reason="would reach Google Drive")
def test_celeba_download_without_gdown_says_so(tmp_path):
    with pytest.raises(DataError, match=r"celeba: download into .*/celeba failed \(To download files from GDrive, 'gdown'"):
        load_dataset("celeba", f"dataset.root={tmp_path}", "dataset.download=true")


# ---------------------------------------------------------------- LSUN (LMDB)

def test_lsun_without_lmdb_says_pip_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb -> ImportError, as when it is not installed
    with pytest.raises(DataError) as e:
        load_dataset("lsun", f"dataset.root={tmp_path}")
    assert str(e.value) == "lsun is stored as LMDB and needs the package lmdb: pip install lmdb"


def test_lsun_category_folders_and_labels(tmp_path, monkeypatch):
    """The path logic with a stand-in for lmdb (not installed here): <category>_<split>_lmdb per category."""
    def jpeg(grey):
        buf = io.BytesIO()
        Image.new("RGB", (40, 30), (grey,) * 3).save(buf, "JPEG")
        return buf.getvalue()

    monkeypatch.setitem(sys.modules, "lmdb", fake_lmdb({b"a": jpeg(0), b"b": jpeg(0)}))
    monkeypatch.chdir(tmp_path)  # torchvision's LSUN writes a key cache into the working directory
    with pytest.raises(DataError) as e:
        load_dataset("lsun", f"dataset.root={tmp_path}", "dataset.category=tower")
    assert str(e.value).startswith(f"lsun: no LMDB database at {tmp_path}/tower_train_lmdb/data.mdb; download "
                                   "tower_train_lmdb.zip with the LSUN script")
    for c in ("bedroom", "tower"):
        (tmp_path / f"{c}_train_lmdb").mkdir()
        (tmp_path / f"{c}_train_lmdb/data.mdb").write_bytes(b"")
    one = load_dataset("lsun", f"dataset.root={tmp_path}", "dataset.resolution=16", "dataset.num_workers=0")
    x, y = one.sample(2)
    assert x.shape == (2, 3, 16, 16) and y is None and torch.allclose(x, torch.full_like(x, -1.0), atol=0.05)
    two = load_dataset("lsun", f"dataset.root={tmp_path}", "dataset.category=[bedroom,tower]", "dataset.num_workers=0")
    assert len(two) == 4 and two.info.num_classes == 2 and sorted(two.sample(4)[1].tolist()) == [0, 0, 1, 1]
