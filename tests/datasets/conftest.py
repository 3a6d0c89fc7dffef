"""Tiny MNIST-like IDX files, written by hand, for the MNIST and synthetic MNIST tests."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mflow.datasets import mnist

SIZES = {"train": 40, "test": 12}  # images per split; labels cycle through 0..3


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array, written independently of mflow's writer."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def tiny_split(split: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    n = SIZES[split]
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 4).astype(np.uint8)
    return images, labels


def write_tiny_mnist(folder: Path, gz: bool = True) -> dict[str, str]:
    """Write the four files into ``folder`` (the train images plain, the rest gzipped when ``gz``)
    and return their sha256 table."""
    folder.mkdir(parents=True, exist_ok=True)
    table = {}
    for split, (img_name, lab_name) in mnist.FILES.items():
        images, labels = tiny_split(split, seed=len(split))
        for name, array in ((img_name, images), (lab_name, labels)):
            data = idx_bytes(array)
            table[name] = hashlib.sha256(data).hexdigest()
            if gz and name != "train-images-idx3-ubyte":
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return table


@pytest.fixture
def mnist_files() -> SimpleNamespace:
    """The helpers above, for tests (a fixture, so no test imports ``conftest`` by name)."""
    return SimpleNamespace(idx_bytes=idx_bytes, tiny_split=tiny_split, write=write_tiny_mnist)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No environment folders, and a mirror that refuses connections at once."""
    monkeypatch.delenv("MFLOW_DATA_DIR", raising=False)
    monkeypatch.delenv("MFLOW_CACHE_DIR", raising=False)
    monkeypatch.setattr(mnist, "MIRRORS", ("http://127.0.0.1:9/",))


@pytest.fixture
def tiny_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None) -> Path:
    """A folder of tiny MNIST files whose checksums are the ones verified against."""
    root = tmp_path / "mnist"
    monkeypatch.setattr(mnist, "CHECKSUMS", write_tiny_mnist(root))
    return root
