"""MNIST from its four IDX files: found, verified against the published checksums, downloaded."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import struct
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mflow.config import DataSpec
from mflow.datasets.registry import Dataset, register
from mflow.files import atomic_write

__all__ = [
    "CHECKSUMS",
    "DEFAULT_ROOT",
    "DOWNLOAD_TIMEOUT_S",
    "FILES",
    "MIRRORS",
    "idx_sha256",
    "mnist",
    "mnist_root",
    "pixels_to_float",
    "read_idx",
    "read_mnist",
    "subset_indices",
    "write_idx",
]

#: sha256 of the *decompressed* canonical IDX files, so gzipped and plain copies verify alike.
CHECKSUMS: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
#: (images, labels) file names of each split.
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: Folders that serve ``<name>.gz``, tried in order.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
DOWNLOAD_TIMEOUT_S = 5.0  # seconds per connection attempt and per read
DEFAULT_ROOT = "~/.cache/mflow/mnist"  # used when neither data.root nor $MFLOW_DATA_DIR is set

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder(">"): k for k, v in _IDX_DTYPES.items()}


def mnist_root(root: str | os.PathLike | None = None) -> Path:
    """The folder MNIST is read from: ``root``, else ``$MFLOW_DATA_DIR``, else ``DEFAULT_ROOT``.

    Example:
        >>> mnist_root("/data/mnist")
        PosixPath('/data/mnist')
    """
    if root is None:
        root = os.environ.get("MFLOW_DATA_DIR") or DEFAULT_ROOT
    return Path(root).expanduser()


def _decompressed(path: Path) -> bytes:
    """The bytes of ``path``, gunzipped if they start with the gzip magic (whatever the suffix)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a valid gzip file ({e})") from None
    return raw


def _parse_idx(data: bytes, source: str | os.PathLike) -> np.ndarray:
    """Parse IDX bytes: two zero bytes, a type code, the rank, big-endian uint32 sizes, data."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{source}: not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source}: IDX header truncated")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{source}: IDX file of shape {shape} should have {expected} bytes, has {len(data)}"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzipped or not, into an array of its shape and type.

    Example:
        >>> import tempfile, pathlib
        >>> p = write_idx(pathlib.Path(tempfile.mkdtemp()) / "a.gz", np.arange(6, dtype=np.uint8))
        >>> read_idx(p)
        array([0, 1, 2, 3, 4, 5], dtype=uint8)
    """
    path = Path(path)
    return _parse_idx(_decompressed(path), path)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``; returns the path."""
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder(">"))
    if code is None:
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX type code")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    return atomic_write(path, lambda f: f.write(data))


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cached_digest(path: Path) -> str | None:
    """The digest recorded beside ``path``, if the file's size and mtime still match it."""
    try:
        record = json.loads(_marker(path).read_text())
        return record["sha256"] if record["stamp"] == _stamp(path) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remember_digest(path: Path, digest: str, stamp: dict[str, int]) -> str:
    """Record ``digest`` beside ``path`` (best effort: a read-only folder is simply re-hashed)."""
    record = json.dumps({"sha256": digest, "stamp": stamp}).encode()
    try:
        atomic_write(_marker(path), lambda f: f.write(record))
    except OSError:
        pass
    return digest


def _digest(path: Path, data: bytes | None = None) -> str:
    cached = _cached_digest(path)
    if cached is not None:
        return cached
    stamp = _stamp(path)
    data = _decompressed(path) if data is None else data
    return _remember_digest(path, hashlib.sha256(data).hexdigest(), stamp)


def idx_sha256(path: str | os.PathLike) -> str:
    """sha256 of the decompressed content of ``path``.

    The result is cached in ``<path>.sha256``, keyed by the file's size and modification
    time, so large files are hashed once; a changed file is hashed again.
    """
    return _digest(Path(path))


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing_message(root: Path, missing: Sequence[str], errors: Sequence[str]) -> str:
    names = ", ".join(n for pair in FILES.values() for n in pair)
    tried = "; ".join(errors) if errors else "no mirrors configured"
    return (
        f"MNIST: {', '.join(missing)} not found in {root}. Put the four IDX files {names} "
        f"(plain or .gz) in that folder, or point data.root or $MFLOW_DATA_DIR at a folder that "
        f"holds them. Download failed: {tried}"
    )


def _download(root: Path, names: Sequence[str], verify: bool) -> None:
    """Fetch ``<name>.gz`` for each name from the first mirror that serves a verified copy."""
    errors: list[str] = []
    missing = []
    for name in names:
        for mirror in MIRRORS:
            url = f"{mirror}{name}.gz"
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    raw = response.read()
                data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
                digest = hashlib.sha256(data).hexdigest()
                if verify and digest != CHECKSUMS[name]:
                    raise ValueError(f"checksum mismatch ({digest})")
                atomic_write(root / f"{name}.gz", lambda f, raw=raw: f.write(raw))
                break
            except (OSError, ValueError, EOFError, http.client.HTTPException) as e:
                errors.append(f"{url}: {e}")
        else:
            missing.append(name)
    if missing:
        raise FileNotFoundError(_missing_message(root, missing, errors))


def _verified(path: Path, name: str, verify: bool) -> np.ndarray:
    data = _decompressed(path)
    if verify:
        digest = _digest(path, data)
        if digest != CHECKSUMS[name]:
            raise ValueError(
                f"{path}: sha256 of the decompressed content is {digest}, but the published "
                f"checksum of {name} is {CHECKSUMS[name]}. The file is corrupt or not MNIST: "
                f"delete it to download it again, or replace it."
            )
    return _parse_idx(data, path)


def read_mnist(
    root: str | os.PathLike | None = None,
    split: str = "train",
    *,
    verify: bool = True,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The raw images ``(N, 28, 28)`` and labels ``(N,)`` (both uint8) of one split.

    Args:
        root: the folder with the IDX files (see ``mnist_root``). Each file may be plain or
            gzipped (``<name>`` or ``<name>.gz``).
        split: ``"train"`` or ``"test"``.
        verify: check the sha256 of each file's decompressed content against ``CHECKSUMS``.
        download: fetch missing files from ``MIRRORS`` into ``root``; without a network this
            fails within ``DOWNLOAD_TIMEOUT_S`` with a message naming the folder and the files.
    """
    if split not in FILES:
        raise ValueError(f"data.split: must be one of {sorted(FILES)}, got {split!r}")
    root = mnist_root(root)
    names = FILES[split]
    missing = [name for name in names if _find(root, name) is None]
    if missing:
        if not download:
            raise FileNotFoundError(_missing_message(root, missing, ["download disabled"]))
        _download(root, missing, verify)
    images, labels = (_verified(_find(root, name), name, verify) for name in names)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"MNIST {split} in {root}: images of shape {images.shape} and labels of shape "
            f"{labels.shape} do not match"
        )
    return images, labels


def subset_indices(
    labels: np.ndarray, classes: Sequence[int] | None, n: int, seed: int
) -> np.ndarray:
    """Indices of a seeded subset: ``n`` in all, or ``n`` per class when ``classes`` are given.

    Each class is shuffled with its own generator seeded by ``(seed, class)`` and its first
    ``n`` are kept (all of them when it has fewer), so a class's points do not depend on the
    other classes asked for, and a larger ``n`` extends a smaller one. Indices come back
    grouped by class in the order asked, each group in file order.

    Example:
        >>> subset_indices(np.array([0, 1, 0, 1, 0]), classes=(0,), n=5, seed=0)
        array([0, 2, 4])
    """
    if classes is None:
        return np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
    classes = [int(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ValueError(f"data.classes: repeated class in {classes}")
    present = set(np.unique(labels).tolist())
    absent = [c for c in classes if c not in present]
    if absent:
        raise ValueError(
            f"data.classes: class {', '.join(map(str, absent))} not in the data "
            f"(present: {sorted(present)})"
        )
    parts = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        rng = np.random.default_rng([seed, c])
        parts.append(np.sort(rng.permutation(members)[:n]))
    return np.concatenate(parts)


def pixels_to_float(
    pixels: np.ndarray, scale: bool = True, dequantize: bool = False, seed: int = 0
) -> np.ndarray:
    """Grey levels 0..255 to float32.

    With ``scale``: ``p / 255`` in ``[0, 1]``, or ``(p + u) / 256`` in ``[0, 1)`` with
    dequantisation, ``u ~ U(0, 1)`` drawn from a generator seeded by ``seed``. Without
    ``scale`` the values stay in grey levels: ``p``, or ``p + u``.

    Example:
        >>> pixels_to_float(np.array([0, 255], dtype=np.uint8))
        array([0., 1.], dtype=float32)
    """
    x = pixels.astype(np.float32)
    if dequantize:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
        x += rng.random(x.shape, dtype=np.float32)
    if scale:
        x /= 256.0 if dequantize else 255.0
    return x


@register("mnist", shape=(1, 28, 28))
def mnist(spec: DataSpec) -> Dataset:
    """MNIST digits as ``(n, 1, 28, 28)`` floats, labels in ``Dataset.labels``.

    Reads ``spec.split`` from ``mnist_root(spec.root)`` (checksums verified, missing files
    downloaded where a network is there). ``spec.classes`` keeps some digits (None: all);
    ``spec.n`` points per class when classes are given, else in all; a class with fewer
    points gives all of them (see ``subset_indices``). Pixel values follow ``spec.scale`` and
    ``spec.dequantize`` (see ``pixels_to_float``). ``factors['index']`` holds each point's
    row in the split's files. The true dimension is unknown.
    """
    images, labels = read_mnist(spec.root, spec.split)
    index = subset_indices(labels, spec.classes, spec.n, spec.seed)
    x = pixels_to_float(images[index], spec.scale, spec.dequantize, spec.seed)
    return Dataset(
        "mnist",
        x[:, None],
        labels=labels[index].astype(np.int64),
        factors={"index": index},
    )
