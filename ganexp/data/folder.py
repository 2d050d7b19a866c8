"""A user's own folder of images, streamed: every PNG, JPEG and WebP file below ``root``.

When every image sits in a sub-folder and there are at least two, the first-level
sub-folder names are the classes (sorted, like torchvision's ImageFolder). Unreadable
files are skipped with a warning and counted, never a crash: a scan of the headers at
build time catches most (empty, truncated headers, not an image); a file that fails to
decode later is replaced by the next readable one.
"""
from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from ganexp.data.base import DataInfo, LoaderData, binarizable
from ganexp.data.fetch import data_root
from ganexp.data.stream import image_transform
from ganexp.errors import DataError

log = logging.getLogger(__name__)

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def find_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def readable(path: Path) -> bool:
    """The header parses as an image (cheap: PIL reads pixels lazily)."""
    try:
        with Image.open(path) as im:
            return im.size[0] > 0 and im.size[1] > 0
    except (OSError, SyntaxError, ValueError):  # UnidentifiedImageError is an OSError
        return False


def class_labels(root: Path, paths: list[Path]) -> tuple[list[int], list[str]]:
    """Labels from first-level sub-folders, or ([0, ...], []) when images sit in ``root`` or in one folder."""
    tops = [p.relative_to(root).parts for p in paths]
    if any(len(t) == 1 for t in tops):
        return [0] * len(paths), []
    classes = sorted({t[0] for t in tops})
    if len(classes) < 2:
        return [0] * len(paths), []
    index = {c: i for i, c in enumerate(classes)}
    return [index[t[0]] for t in tops], classes


class ImageFiles(Dataset):
    """(uint8 image, label) from a list of files; a file that fails to decode is skipped with a warning."""

    def __init__(self, paths: list[Path], labels: list[int], transform):
        self.paths, self.labels, self.transform = paths, labels, transform
        self.skipped: set[int] = set()  # per process: each DataLoader worker keeps its own

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int):
        with Image.open(self.paths[i]) as im:
            return self.transform(im)

    def __getitem__(self, i: int):
        for k in range(len(self.paths)):
            j = (i + k) % len(self.paths)
            if j in self.skipped:
                continue
            try:
                return self.load(j), self.labels[j]
            except (OSError, SyntaxError, ValueError) as e:
                self.skipped.add(j)
                log.warning("image_folder: skipping unreadable image %s (%s); %d skipped so far in this process",
                            self.paths[j], str(e).splitlines()[0] if str(e) else type(e).__name__, len(self.skipped))
        raise DataError(f"image_folder: none of the {len(self.paths)} images could be decoded; check the files")


@binarizable
def image_folder(root: str | None = None, resolution: int = 64, channels: int = 3, check_files: bool = True,
                 num_workers: int | None = None, name: str = "image_folder") -> LoaderData:
    """Every image below ``root`` (recursive), resized and center-cropped to ``resolution``."""
    if not root:
        raise DataError("image_folder needs a folder: set dataset.root=PATH to a folder of PNG/JPEG/WebP images")
    path = data_root(root)
    if not path.is_dir():
        raise DataError(f"image_folder: {path} is not a folder; set dataset.root=PATH to a folder of PNG/JPEG/WebP images")
    paths = find_images(path)
    if not paths:
        raise DataError(f"image_folder: no PNG/JPEG/WebP images under {path}; put images there (sub-folders become "
                        f"classes) or set dataset.root=PATH to another folder")
    bad = [p for p in paths if not readable(p)] if check_files else []
    if bad:
        if len(bad) == len(paths):
            raise DataError(f"image_folder: none of the {len(paths)} images under {path} is readable (e.g. {bad[0]}); "
                            f"replace the files or set dataset.root=PATH to another folder")
        log.warning("image_folder: skipped %d unreadable of %d files under %s (first: %s)", len(bad), len(paths), path, bad[0])
        drop = set(bad)
        paths = [p for p in paths if p not in drop]
    labels, classes = class_labels(path, paths)
    ds = ImageFiles(paths, labels, image_transform(resolution, channels))
    ds.classes, ds.bad_files = classes, bad
    return LoaderData(ds, DataInfo("image", (channels, resolution, resolution), len(classes), name), num_workers)
