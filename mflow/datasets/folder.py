"""A user's folder of image files as a dataset (``images``): PNG or JPEG, one image a file.

The images lie directly in the folder (no classes) or in class sub-folders, one level deep,
whose names give the labels: a folder named by a whole number (``0``, ``7``, ``12``) is that
class; when any name is not a number, the classes are numbered 0, 1, ... in the names' sorted
order (as torchvision's ``ImageFolder`` does). ``data.classes`` keeps some of them by label.

Pillow reads the images; it is imported when a folder is read, so ``mflow`` needs it only for
this dataset. ``index_folder`` reads only the files' headers (Pillow opens lazily), so the size
of the data is known before any image is decoded (``pipelines.job.footprint``).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mflow.config import DataSpec
from mflow.datasets.arrays import HELDOUT_ROWS, MIN_ROWS, drawn
from mflow.datasets.mnist import subset_indices
from mflow.datasets.registry import Dataset, register

__all__ = [
    "IMAGE_SUFFIXES",
    "FolderIndex",
    "chosen_rows",
    "folder_files",
    "images",
    "index_folder",
    "read_image",
]

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_FORMATS = ("JPEG", "PNG")  # what Pillow must find in them
# Pillow's modes of one grey channel; any other mode is read as RGB (alpha dropped).
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "La")
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L")  # 16-bit grey: values 0..65535


@dataclass(frozen=True)
class FolderIndex:
    """What a folder's file listing and the images' headers say, no image decoded."""

    files: tuple[Path, ...]  # every image, in class then file-name order
    labels: np.ndarray | None  # each file's class label; None: no class sub-folders
    classes: dict[int, str]  # label -> sub-folder name
    shape: tuple[int, int, int]  # (C, H, W) of every image as loaded

    @property
    def rows(self) -> int:
        return len(self.files)


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ValueError(
            "data.dataset 'images' reads image files with Pillow, which is not installed; "
            "pip install pillow"
        ) from None
    return Image


def _visible(folder: Path) -> list[Path]:
    """The entries of ``folder`` in name order; hidden ones (``.DS_Store``) are skipped."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    """The files of ``folder``, each of which must be an image file (by its suffix)."""
    files = _visible(folder)
    for p in files:
        if p.is_dir():
            raise ValueError(
                f"{p}: a folder inside a class folder; images lie directly in data.path or "
                "one level down, in class sub-folders"
            )
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(
                f"{p}: not an image file ({', '.join(IMAGE_SUFFIXES)}); the folder data.path "
                "holds only images, one a file (hidden files are skipped)"
            )
    return files


def _labels(names: list[str]) -> list[int]:
    """Each class folder's label: its name when every name is a whole number, else its index
    in sorted order.

    Example:
        >>> _labels(["3", "10"]), _labels(["cat", "dog"])
        ([3, 10], [0, 1])
    """
    if all(name.isdecimal() for name in names):
        return [int(name) for name in names]
    return list(range(len(names)))


def folder_files(folder: str | os.PathLike) -> tuple[list[Path], dict[str, list[Path]]]:
    """The image files directly in ``folder`` and those of each class sub-folder (by name); one
    of the two is empty. ``ValueError`` naming the path for a missing folder, a file that is
    not an image file (by suffix), folders deeper than one level, images both directly in the
    folder and in sub-folders, or no images at all."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (data.path)")
    entries = _visible(folder)
    subfolders = [p for p in entries if p.is_dir()]
    loose = _images_in(folder) if not subfolders else [p for p in entries if not p.is_dir()]
    if subfolders and loose:
        raise ValueError(
            f"{loose[0]}: a file beside class sub-folders ({subfolders[0].name}/, ...); put "
            "every image in a class folder, or none in folders"
        )
    classes = {p.name: _images_in(p) for p in sorted(subfolders, key=lambda p: p.name)}
    if not loose and not any(classes.values()):
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) (data.path)")
    for name, files in classes.items():
        if not files:
            raise ValueError(f"{folder / name}: a class folder without image files")
    count = len(loose) + sum(map(len, classes.values()))
    if count < MIN_ROWS:
        raise ValueError(f"{folder}: {count} image; at least {MIN_ROWS} are needed (data.path)")
    return loose, classes


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """``((width, height), mode)`` of an image file from its header, nothing decoded."""
    stat = path.stat()
    return _header_of(path, stat.st_size, stat.st_mtime_ns)


# A folder's headers are read by the footprint, the data check and the loader of each fit in
# a process: read once per file version.
@functools.lru_cache(maxsize=2**17)
def _header_of(path: Path, size: int, mtime_ns: int) -> tuple[tuple[int, int], str]:
    image_module = _pillow()
    try:
        with image_module.open(path) as image:
            if image.format not in _FORMATS:
                raise ValueError(f"{path}: a {image.format} image; only PNG and JPEG are read")
            return image.size, image.mode
    except (OSError, image_module.DecompressionBombError) as exc:
        raise ValueError(f"{path}: not a readable PNG or JPEG image ({exc})") from None


def index_folder(folder: str | os.PathLike) -> FolderIndex:
    """The images of ``folder`` (``folder_files``), their labels and their common shape, read
    from the files' headers. ``ValueError`` naming the file for an unreadable image, and for
    the first image whose size differs from the first image's (both sizes given).

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for i in range(3):
        ...     Image.new("RGB", (5, 4)).save(root / f"{i}.png")
        >>> index = index_folder(root)
        >>> index.rows, index.shape, index.labels
        (3, (3, 4, 5), None)
    """
    loose, classes = folder_files(folder)
    labels_of = dict(zip(classes, _labels(list(classes)), strict=True))
    files = loose + [p for files in classes.values() for p in files]
    first_size, grey = None, True
    for path in files:
        size, mode = _header(path)
        if first_size is None:
            first_size = size
        elif size != first_size:
            raise ValueError(
                f"{path}: {size[0]}x{size[1]} pixels (width x height), but {files[0]} is "
                f"{first_size[0]}x{first_size[1]}; every image of the folder must be the same size"
            )
        grey = grey and mode in _GREY_MODES
    labels = None
    if classes:
        labels = np.concatenate([np.full(len(f), labels_of[name], dtype=np.int64)
                                 for name, f in classes.items()])
    width, height = first_size
    return FolderIndex(
        files=tuple(files),
        labels=labels,
        classes={label: name for name, label in labels_of.items()},
        shape=(1 if grey else 3, height, width),
    )


def read_image(path: Path, channels: int) -> np.ndarray:
    """An image file as ``(channels, H, W)`` float64 in ``[0, 1]``: grey or RGB (alpha
    dropped), 8-bit values divided by 255, 16-bit grey ones by 65535. ``ValueError`` naming
    the file when it cannot be decoded (a corrupt or truncated image)."""
    image_module = _pillow()
    try:
        with image_module.open(path) as image:
            if image.mode in _WIDE_MODES:
                x = np.asarray(image, dtype=np.float64) / 65535.0
                x = np.repeat(x[None], channels, axis=0)
            else:
                x = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float64)
                x = (x[None] if channels == 1 else x.transpose(2, 0, 1)) / 255.0
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable PNG or JPEG image ({exc})") from None
    return x


def chosen_rows(index: FolderIndex, spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``index`` a fit of ``spec`` trains on and those it holds out (rows of
    ``index.files``): of the classes ``spec.classes`` (all when None), every image when
    ``spec.n`` is None but a held-out slice (``held_back``), else ``n`` in all, or per class
    when classes are given, drawn with ``spec.seed`` as MNIST's are (``subset_indices``), and
    up to ``HELDOUT_ROWS`` of the others held out (``drawn``)."""
    if spec.classes is not None and index.labels is None:
        raise ValueError(
            f"data.classes: {spec.path} has no class sub-folders, so classes "
            f"{list(spec.classes)} cannot be kept"
        )
    if index.labels is None:
        return drawn(index.rows, spec.n, spec.seed)
    try:
        pool = subset_indices(index.labels, spec.classes, index.rows, spec.seed)
    except ValueError as exc:
        folders = ", ".join(f"{label}: {name}" for label, name in sorted(index.classes.items()))
        raise ValueError(f"{exc}; the class folders of {spec.path} are {folders}") from None
    if spec.n is None:
        train, held = drawn(len(pool), None, spec.seed)
        return pool[train], pool[held]
    rows = subset_indices(index.labels, spec.classes, spec.n, spec.seed)
    others = np.random.default_rng(spec.seed).permutation(np.setdiff1d(pool, rows))
    return rows, np.sort(others[:HELDOUT_ROWS])


# version 2: with data.n unset a held-out slice is kept aside (``held_back``)
@register("images", version=2, every_row=True)
def images(spec: DataSpec) -> Dataset:
    """The images of the folder ``spec.path`` as ``(n, C, H, W)`` floats in ``[0, 1]`` (C = 1
    when every image is grey, else 3), labels from the class sub-folders in ``Dataset.labels``
    and each image's file in ``factors['file']`` (its index in ``index_folder``'s order).

    Which images: see ``chosen_rows``; only those are decoded. Not standardised, as MNIST is
    not: ``model.kind: conv`` reads them as images. The true dimension is unknown.
    """
    if spec.path is None:
        raise ValueError("data.path: the 'images' dataset needs the path of a folder of images")
    if spec.columns is not None:
        raise ValueError("data.columns: is for table files (.csv, .parquet), not image folders")
    index = index_folder(spec.path)
    rows, others = chosen_rows(index, spec)
    channels = index.shape[0]

    def read(which: np.ndarray) -> np.ndarray:
        out = np.empty((len(which), *index.shape))
        for i, row in enumerate(which):
            out[i] = read_image(index.files[row], channels)
        return out

    labels = None if index.labels is None else index.labels[rows]
    return Dataset("images", read(rows), labels=labels, factors={"file": rows},
                   heldout=read(others))
