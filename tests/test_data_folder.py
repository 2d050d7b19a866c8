"""image_folder: a user's folder with sub-folders, mixed formats and sizes, and corrupt files."""
from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganexp.build import build_run
from ganexp.build.factory import build_dataset
from ganexp.engine import train
from ganexp.data import LoaderData
from ganexp.data.stream import image_transform
from ganexp.errors import DataError
from tests.conftest import make_cfg, read_events, spy, training_inputs

COLOURS = {"cats": (255, 255, 255), "dogs": (0, 0, 0)}


def load(root: Path, *overrides: str):
    return build_dataset(make_cfg(["dataset=image_folder", f"dataset.root={root}", "dataset.num_workers=0",
                                  "dataset.resolution=16", *overrides]).dataset)


def write_folder(root: Path) -> None:
    """cats/ white and dogs/ black, in PNG, JPEG and WebP, non-square, one nested a level deeper;
    plus a text file that is ignored."""
    for cls, colour in COLOURS.items():
        (root / cls / "more").mkdir(parents=True)
        Image.new("RGB", (40, 24), colour).save(root / cls / "a.png")
        Image.new("RGB", (24, 40), colour).save(root / cls / "b.JPG", "JPEG")
        Image.new("RGBA", (32, 32), (*colour, 255)).save(root / cls / "more" / "c.webp", "WEBP", lossless=True)
    (root / "cats" / "notes.txt").write_text("not an image")


def test_subfolders_become_classes_and_labels_travel_with_images(tmp_path):
    write_folder(tmp_path)
    data = load(tmp_path)
    assert isinstance(data, LoaderData) and len(data) == 6
    assert data.dataset.classes == ["cats", "dogs"]
    assert (data.info.kind, data.info.shape, data.info.num_classes) == ("image", (3, 16, 16), 2)
    x, y = data.sample(6)
    assert x.shape == (6, 3, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x[y == 0], torch.ones_like(x[y == 0]), atol=0.02)  # cats: white -> 1
    assert torch.allclose(x[y == 1], -torch.ones_like(x[y == 1]), atol=0.02)  # dogs: black -> -1


def test_flat_folder_is_unlabelled_and_greyscale_works(tmp_path):
    for i in range(3):
        Image.new("RGB", (20, 20), (200, 10, 10)).save(tmp_path / f"{i}.png")
    data = load(tmp_path, "dataset.channels=1")
    x, y = data.sample(3)
    assert y is None and data.info.num_classes == 0 and x.shape == (3, 1, 16, 16)


def test_resize_keeps_aspect_and_center_crops(tmp_path):
    """A 64x32 image, left half black and right half white: the crop keeps the middle square."""
    img = Image.new("L", (64, 32), 0)
    img.paste(255, (32, 0, 64, 32))
    img.convert("RGB").save(tmp_path / "half.png")
    x, _ = load(tmp_path).sample(1)
    assert x.shape == (1, 3, 16, 16)
    assert x[0, :, :, :7].max() < -0.9 and x[0, :, :, 9:].min() > 0.9


def test_crop_before_resize_keeps_the_centre():
    """CelebA's ``crop``: a 20-pixel centre crop of a 60x60 image whose middle 20x20 is white."""
    img = Image.new("RGB", (60, 60), (0, 0, 0))
    img.paste((255, 255, 255), (20, 20, 40, 40))
    out = image_transform(8, 3, crop=20)(img)
    assert out.shape == (3, 8, 8) and out.dtype == torch.uint8 and out.min() == 255
    assert image_transform(8, 3)(img).float().mean() < 255 * 0.2  # without the crop: mostly black


def test_corrupt_files_are_skipped_with_a_warning_and_counted(tmp_path, caplog):
    write_folder(tmp_path)
    (tmp_path / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "dogs" / "empty.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="ganexp.data.folder"):
        data = load(tmp_path)
    assert len(data) == 6 and sorted(p.name for p in data.dataset.bad_files) == ["broken.png", "empty.jpg"]
    assert f"skipped 2 unreadable of 8 files under {tmp_path}" in caplog.text
    assert data.sample(6)[0].shape == (6, 3, 16, 16)


def test_file_that_fails_to_decode_later_is_replaced(tmp_path, caplog):
    """A valid header with truncated pixel data passes the scan and fails in the loader."""
    write_folder(tmp_path)
    Image.new("RGB", (64, 64), (255, 0, 0)).save(tmp_path / "cats" / "trunc.png", compress_level=0)
    (tmp_path / "cats" / "trunc.png").write_bytes((tmp_path / "cats" / "trunc.png").read_bytes()[:200])
    data = load(tmp_path)
    assert len(data) == 7 and not data.dataset.bad_files
    with caplog.at_level(logging.WARNING, logger="ganexp.data.folder"):
        items = [data.dataset[i] for i in range(len(data))]
    assert "skipping unreadable image" in caplog.text and "trunc.png" in caplog.text
    assert all(x.shape == (3, 16, 16) and x.dtype == torch.uint8 for x, _ in items)
    assert len(data.dataset.skipped) == 1


def test_streams_through_worker_processes(tmp_path):
    write_folder(tmp_path)
    data = load(tmp_path, "dataset.num_workers=2")
    loader = data._loader(3)
    assert loader.num_workers == 2 and loader.persistent_workers and loader.drop_last
    x, y = data.sample(3)
    assert x.shape == (3, 3, 16, 16) and y.shape == (3,)
    t0 = time.perf_counter()
    del data, loader  # the workers stop at once (a reference cycle used to stall 5 s per worker)
    gc.collect()
    assert time.perf_counter() - t0 < 2.0


def test_conditional_dcgan_trains_on_a_folder(tmp_path):
    write_folder(tmp_path / "images")
    cfg = make_cfg(["loss=nsgan", "dataset=image_folder", f"dataset.root={tmp_path / 'images'}", "dataset.resolution=16",
                    "dataset.num_workers=0", "conditional=true", "train.batch_size=4"], tmp_path / "run")
    run = build_run(cfg)
    assert run.G.num_classes == 2 and run.G(*run.latent.sample(2)).shape == (2, 3, 16, 16)
    real, d_in = spy(run.data, "sample"), training_inputs(run.D)
    train(run)
    for s in range(4):  # D judges each real image with its folder's label
        assert torch.equal(d_in[3 * s][0], real[s][1][0]) and torch.equal(d_in[3 * s][1], real[s][1][1])
    assert set(torch.cat([labels for _, (_, labels) in real]).tolist()) == {0, 1}
    # a row per class: 16 fixed latents, 8 of each of the 2 classes, 16 px images 2 px apart
    (grid,) = read_events(run.out_dir).Images("samples/grid")
    assert (grid.width, grid.height) == (8 * 18 + 2, 2 * 18 + 2)


@pytest.mark.parametrize("setup, fragment", [
    (lambda p: None, "image_folder: {p}/nope is not a folder; set dataset.root=PATH to a folder of PNG/JPEG/WebP images"),
    (lambda p: (p / "nope").mkdir(), "image_folder: no PNG/JPEG/WebP images under {p}/nope; put images there"),
    (lambda p: ((p / "nope").mkdir(), (p / "nope" / "x.png").write_bytes(b"junk")),
     "image_folder: none of the 1 images under {p}/nope is readable (e.g. {p}/nope/x.png); replace the files"),
])
def test_folder_errors_are_one_line_naming_the_path(tmp_path, setup, fragment):
    setup(tmp_path)
    with pytest.raises(DataError) as e:
        load(tmp_path / "nope")
    assert str(e.value).startswith(fragment.format(p=tmp_path)) and "\n" not in str(e.value)


def test_root_is_required():
    with pytest.raises(DataError, match="image_folder needs a folder: set dataset.root=PATH"):
        build_dataset(make_cfg(["dataset=image_folder"]).dataset)
