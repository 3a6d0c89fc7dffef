"""A fit's footprint, known from its spec before anything is allocated: the bytes its data
take (points x dimensions x bytes per value) and its model's parameters; and the refusal of a
fit that cannot fit in this machine's memory (``check_footprint``, first thing in
``check_data``, so ``survey validate``, ``run`` and ``export`` refuse before any point is made
or read). Nothing is generated or read here beyond a data file's header.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mflow.config import DataSpec, FitSpec, ModelSpec, PriorSpec
from mflow.datasets.arrays import csv_shape, drawn_counts
from mflow.datasets.manifolds import OWN_DIMENSIONS
from mflow.datasets.registry import EVERY_ROW, with_default_n
from pipelines.job.errors import JobError

if TYPE_CHECKING:
    from mflow.datasets.folder import FolderIndex

__all__ = ["Footprint", "check_footprint", "data_points", "footprint", "machine_memory",
           "model_parameters", "user_rows"]

# Bytes per value a fit holds its points in at once: as made or read (numpy float64), as the
# float32 dataset (mflow.datasets.load), and the copy it trains on (train.dtype).
MADE_BYTES = 8
DATASET_BYTES = 4
DTYPE_BYTES = {"float32": 4, "float64": 8}
# Copies of each parameter a fit holds: the parameter, its gradient and Adam's two moments.
PARAMETER_COPIES = 4
MNIST_ROWS = {"train": 60000, "test": 10000}
MNIST_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class Footprint:
    """What one fit holds in memory, known from its spec."""

    points: int | None  # points the fit holds (None: only known by reading the file)
    shape: tuple[int, ...] | None  # the shape of one point
    data_bytes: int  # the points at their peak (as made, as a dataset, as trained on)
    rotation_bytes: int  # a constructed manifold's random rotation of R^D (D x D, QR)
    parameters: int | None  # the model's parameters (None: the shape is unknown)
    model_bytes: int  # parameters, gradients and Adam's moments

    @property
    def dim(self) -> int | None:
        return None if self.shape is None else math.prod(self.shape)

    @property
    def total_bytes(self) -> int:
        return self.data_bytes + self.rotation_bytes + self.model_bytes


def _npy_shape(path: Path, key: str | None) -> tuple[tuple[int, ...], int] | None:
    """The shape and item size of a ``.npy`` file, or of an ``.npz`` member, from its header."""
    try:
        if path.suffix.lower() == ".npy":
            x = np.load(path, mmap_mode="r", allow_pickle=False)
            return tuple(x.shape), x.dtype.itemsize
        with zipfile.ZipFile(path) as archive:
            names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
            if key is None and len(names) == 1:
                key = names[0]
            if key not in names:
                return None  # the loader says which arrays the file holds
            with archive.open(f"{key}.npy") as f:
                major, _ = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if major == 1
                        else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read(f)
                return tuple(shape), dtype.itemsize
    except (OSError, ValueError, zipfile.BadZipFile):
        return None  # missing, unreadable or not numpy: the loader names the problem


def _folder(data: DataSpec) -> FolderIndex | None:
    """A user's image folder's index (its files' headers); None where the loader refuses it."""
    from mflow.datasets.folder import index_folder

    try:
        return None if data.path is None else index_folder(data.path)
    except (OSError, ValueError):
        return None


def _file_shape(data: DataSpec) -> tuple[int, ...] | None:
    """The shape of a user's data (``dataset: array``: a numpy file's header, a table's row
    and column counts; ``images``: the folder's image headers), rows first; None for other
    data, or data the loader will refuse (it names the problem)."""
    if data.dataset == "images":
        index = _folder(data)
        return None if index is None else (index.rows, *index.shape)
    if data.dataset != "array" or data.path is None:
        return None
    path = Path(data.path).expanduser()
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        header = _npy_shape(path, data.key)
        return None if header is None or len(header[0]) < 2 else header[0]
    if suffix == ".csv":
        try:
            return csv_shape(path, data.columns)
        except (OSError, ValueError):
            return None
    if suffix == ".parquet":
        from pipelines.job.readers import parquet_shape

        shape = parquet_shape(path)
        return None if shape is None else (shape[0], len(data.columns or ()) or shape[1])
    return None


def user_rows(data: DataSpec) -> tuple[int, int] | None:
    """For a user's data (``array``, ``images``): the rows on offer (of the classes kept) and
    the rows a fit trains on, from the headers (``mflow.datasets.arrays.drawn_counts``: all but a
    held-out slice when ``data.n`` is None; else ``data.n``, per class when classes are
    given). None for other data or where unknown."""
    if data.dataset == "images":
        from mflow.datasets.folder import chosen_rows

        index = _folder(data)
        if index is None:
            return None
        try:
            offer = sum(map(len, chosen_rows(index, dataclasses.replace(data, n=None))))
            return offer, len(chosen_rows(index, data)[0])
        except ValueError:
            return None  # a class the folder does not have: the data check names it
    shape = _file_shape(data)
    if shape is None:
        return None
    return shape[0], drawn_counts(shape[0], data.n)[0]


def data_points(data: DataSpec) -> tuple[int | None, tuple[int, ...] | None]:
    """The number of points a fit of ``data`` holds and the shape of one, from the spec (and
    a user's file's or folder's headers); None where only reading the data would tell."""
    from mflow.datasets import sample_shape

    if data.dataset in EVERY_ROW:
        shape, rows = _file_shape(data), user_rows(data)
        if shape is None:
            return None, None
        sample = (1, *shape[1:]) if len(shape) == 3 else tuple(shape[1:])
        return None if rows is None else rows[1], sample
    n = with_default_n(data).n
    if data.dataset == "mnist":
        per = len(data.classes) if data.classes else 1
        return min(n * per, MNIST_ROWS.get(data.split, 60000)), MNIST_SHAPE
    if data.dataset in OWN_DIMENSIONS:
        own = OWN_DIMENSIONS[data.dataset](data.latent_dim)
        return n, (own if data.ambient_dim is None else max(own, data.ambient_dim),)
    return n, sample_shape(data)


def _linear_stack(widths: Sequence[int], kernel: int = 1) -> int:
    """Weights and biases of layers ``widths[0] -> widths[1] -> ...`` (``kernel`` x ``kernel``
    convolutions when ``kernel`` > 1)."""
    return sum(a * b * kernel * kernel + b for a, b in zip(widths[:-1], widths[1:], strict=True))


def model_parameters(model: ModelSpec, prior: PriorSpec, shape: tuple[int, ...]) -> int:
    """The parameters of the flow ``mflow.flow.build_flow`` builds for points of ``shape``,
    and of its prior, counted without building it (``tests`` compare with a built one)."""
    dim = math.prod(shape)

    def couplings(size: int, count: int) -> int:
        split = size // 2
        widths = [split] + [model.hidden] * (model.depth - 1) + [2 * (size - split)]
        return count * _linear_stack(widths)

    total = 0
    if model.kind == "conv" and len(shape) == 3:
        c = shape[0]
        for _ in range(model.conv_levels):
            c *= 4
            split = c // 2
            widths = [split] + [model.conv_hidden] * (model.conv_depth - 1) + [2 * (c - split)]
            total += model.conv_couplings * _linear_stack(widths, kernel=3)
    total += couplings(dim, model.couplings)
    if prior.kind == "manifold":
        total += dim * dim  # A
    return total


def footprint(spec: FitSpec) -> Footprint:
    """What a fit of ``spec`` holds in memory at its peak, from the spec alone."""
    points, shape = data_points(spec.data)
    dim = None if shape is None else math.prod(shape)
    train_bytes = DTYPE_BYTES[spec.train.dtype]
    data_bytes = rotation_bytes = 0
    if points is not None and dim is not None:
        data_bytes = points * dim * (MADE_BYTES + DATASET_BYTES + train_bytes)
    if spec.data.dataset in OWN_DIMENSIONS and dim is not None:
        rotation_bytes = 3 * dim * dim * MADE_BYTES  # a Gaussian D x D matrix and its QR
    parameters = None if shape is None else model_parameters(spec.model, spec.prior, shape)
    model_bytes = 0 if parameters is None else parameters * train_bytes * PARAMETER_COPIES
    return Footprint(points, shape, data_bytes, rotation_bytes, parameters, model_bytes)


def machine_memory() -> int:
    """This machine's memory in bytes (its container's limit where that is lower)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def gib(n: float) -> str:
    """Bytes as the messages write them: ``7.45 GiB``, ``12.0 MiB``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def _model_fields(model: ModelSpec) -> str:
    if model.kind == "conv":
        return (f"model.conv_levels {model.conv_levels}, conv_couplings {model.conv_couplings}, "
                f"conv_hidden {model.conv_hidden}, conv_depth {model.conv_depth}, couplings "
                f"{model.couplings}, hidden {model.hidden}, depth {model.depth}")
    return f"model.couplings {model.couplings}, hidden {model.hidden}, depth {model.depth}"


def check_footprint(spec: FitSpec, memory: int | None = None,
                    machine: str = "this machine") -> Footprint:
    """``spec``'s footprint; a ``JobError`` naming the field and the numbers when a fit of it
    cannot fit in ``memory`` bytes (default: this machine's), the message saying whose
    memory that is (``machine``)."""
    fp = footprint(spec)
    memory = machine_memory() if memory is None else memory
    if fp.total_bytes <= memory:
        return fp
    where = f"more than {machine}'s {gib(memory)} of memory"
    data = spec.data
    biggest = max(fp.data_bytes, fp.rotation_bytes, fp.model_bytes)
    if biggest == fp.data_bytes:
        per = MADE_BYTES + DATASET_BYTES + DTYPE_BYTES[spec.train.dtype]
        asked = with_default_n(data).n
        head = (f"data.n: {asked} is too large" if asked is not None
                else "data.n: not set, so every row is used, too many")
        raise JobError(
            f"{head}: {fp.points} points x {fp.dim} dimensions x {per} "
            f"bytes (float64 as made, float32 as the dataset, {spec.train.dtype} as trained on) "
            f"need {gib(fp.data_bytes)}, {where}; lower data.n"
        )
    if biggest == fp.rotation_bytes:
        key, value = (("data.latent_dim", data.latent_dim) if data.ambient_dim is None
                      else ("data.ambient_dim", data.ambient_dim))
        raise JobError(
            f"{key}: {value} is too large: the random rotation of R^{fp.dim} ({fp.dim} x "
            f"{fp.dim} float64, with its QR) needs {gib(fp.rotation_bytes)}, {where}; lower {key}"
        )
    raise JobError(
        f"model: {fp.parameters} parameters ({_model_fields(spec.model)}) for points of shape "
        f"{fp.shape} need {gib(fp.model_bytes)} with their gradients and Adam's moments, "
        f"{where}; make the model smaller"
    )
