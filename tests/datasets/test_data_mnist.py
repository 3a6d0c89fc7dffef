"""MNIST: IDX parsing, checksums and their cache, folders, download, subsets, pixel values."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mflow.config import DataSpec
from mflow.datasets import load, mnist


def test_read_idx_plain_and_gz(tmp_path: Path, mnist_files: SimpleNamespace) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(mnist_files.idx_bytes(array))
    (tmp_path / "b.gz").write_bytes(gzip.compress(mnist_files.idx_bytes(array)))
    (tmp_path / "c").write_bytes(
        gzip.compress(mnist_files.idx_bytes(array))
    )  # gzip found by content
    for name in ("a", "b.gz", "c"):
        got = mnist.read_idx(tmp_path / name)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, array)


def test_write_idx_round_trip_other_types(tmp_path: Path) -> None:
    array = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    np.testing.assert_array_equal(mnist.read_idx(mnist.write_idx(tmp_path / "x.gz", array)), array)
    floats = np.linspace(0, 1, 5)
    np.testing.assert_array_equal(mnist.read_idx(mnist.write_idx(tmp_path / "y", floats)), floats)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x05", "not an IDX file"),
        (b"\x00\x00\x08\x03\x00\x00", "header truncated"),
        (b"\x00\x00\x08\x01" + b"\x00\x00\x00\x03" + b"\x05", "should have 11 bytes, has 9"),
    ],
)
def test_read_idx_refuses_broken_files(tmp_path: Path, data: bytes, match: str) -> None:
    (tmp_path / "bad").write_bytes(data)
    with pytest.raises(ValueError, match=match):
        mnist.read_idx(tmp_path / "bad")


def test_load_shape_dtype_values_and_labels(tiny_root: Path, mnist_files: SimpleNamespace) -> None:
    d = load(DataSpec("mnist", root=str(tiny_root), n=10, seed=0))
    images, labels = mnist_files.tiny_split("train", seed=5)
    assert d.x.shape == (10, 1, 28, 28) and d.x.dtype == np.float32
    assert d.true_dim is None and d.is_image and d.ambient_dim == 784
    index = d.factors["index"]
    np.testing.assert_allclose(d.x[:, 0], images[index] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d.labels, labels[index])
    assert d.x.min() >= 0 and d.x.max() <= 1


def test_test_split_and_bad_split(tiny_root: Path) -> None:
    d = load(DataSpec("mnist", root=str(tiny_root), split="test", n=100))
    assert d.n == 12  # all of them
    with pytest.raises(ValueError, match="data.split"):
        load(DataSpec("mnist", root=str(tiny_root), split="valid"))


def test_classes_take_n_per_class(tiny_root: Path) -> None:
    d = load(DataSpec("mnist", root=str(tiny_root), classes=(3, 1), n=4, seed=1))
    assert d.labels.tolist() == [3] * 4 + [1] * 4
    every = load(DataSpec("mnist", root=str(tiny_root), classes=(2,), n=1000))
    assert every.n == 10  # a class with fewer points gives all of them
    with pytest.raises(ValueError, match="class 7 not in the data"):
        load(DataSpec("mnist", root=str(tiny_root), classes=(1, 7)))


def test_subsets_are_seeded_and_class_wise_independent(tiny_root: Path) -> None:
    def idx(**kw: object) -> list[int]:
        return load(DataSpec("mnist", root=str(tiny_root), **kw)).factors["index"].tolist()

    assert idx(n=5, seed=2) == idx(n=5, seed=2)
    assert idx(n=5, seed=2) != idx(n=5, seed=3)
    alone = idx(classes=(3,), n=4, seed=2)
    assert idx(classes=(1, 3), n=4, seed=2)[4:] == alone
    assert set(alone) <= set(idx(classes=(3,), n=6, seed=2))  # larger n extends smaller


def test_dequantize_and_scale(tiny_root: Path) -> None:
    plain = load(DataSpec("mnist", root=str(tiny_root), n=8, seed=4))
    noisy = load(DataSpec("mnist", root=str(tiny_root), n=8, seed=4, dequantize=True))
    grey = load(DataSpec("mnist", root=str(tiny_root), n=8, seed=4, scale=False))
    pixels = grey.x.astype(np.int64)
    np.testing.assert_array_equal(grey.x, pixels)
    assert pixels.max() > 1 and pixels.max() <= 255
    np.testing.assert_allclose(plain.x, pixels / 255.0, rtol=1e-6)
    u = noisy.x * 256.0 - pixels  # (p + u) / 256
    assert u.min() >= 0 and u.max() < 1 and u.std() > 0.2
    assert noisy.x.max() < 1
    again = load(DataSpec("mnist", root=str(tiny_root), n=8, seed=4, dequantize=True))
    np.testing.assert_array_equal(noisy.x, again.x)


def test_checksum_mismatch_names_the_file(
    tmp_path: Path, offline: None, mnist_files: SimpleNamespace
) -> None:
    mnist_files.write(tmp_path)  # the real CHECKSUMS stay in force
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*published checksum"):
        load(DataSpec("mnist", root=str(tmp_path)))
    images, labels = mnist.read_mnist(tmp_path, "test", verify=False)
    assert images.shape == (12, 28, 28) and labels.shape == (12,)


def test_checksum_is_cached_by_size_and_mtime(tiny_root: Path) -> None:
    load(DataSpec("mnist", root=str(tiny_root)))
    marker = tiny_root / "train-labels-idx1-ubyte.gz.sha256"
    record = json.loads(marker.read_text())
    assert record["sha256"] == mnist.CHECKSUMS["train-labels-idx1-ubyte"]
    # the marker is trusted while the file is unchanged ...
    marker.write_text(json.dumps({**record, "sha256": "0" * 64}))
    with pytest.raises(ValueError, match="is 0000"):
        load(DataSpec("mnist", root=str(tiny_root)))
    # ... and ignored once the file changed (new mtime): it is hashed again
    path = tiny_root / "train-labels-idx1-ubyte.gz"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert load(DataSpec("mnist", root=str(tiny_root))).n == 40
    assert mnist.idx_sha256(path) == record["sha256"]


def test_folder_from_root_then_environment_then_default(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    offline: None,
    mnist_files: SimpleNamespace,
) -> None:
    assert mnist.mnist_root() == Path(mnist.DEFAULT_ROOT).expanduser()
    monkeypatch.setenv("MFLOW_DATA_DIR", str(tmp_path / "env"))
    assert mnist.mnist_root() == tmp_path / "env"
    assert mnist.mnist_root(str(tmp_path / "job")) == tmp_path / "job"
    monkeypatch.setattr(mnist, "CHECKSUMS", mnist_files.write(tmp_path / "env"))
    assert load(DataSpec("mnist", n=3)).n == 3


def test_missing_files_without_network_say_where_to_put_them(tmp_path: Path, offline: None) -> None:
    with pytest.raises(FileNotFoundError) as e:
        load(DataSpec("mnist", root=str(tmp_path / "empty"), split="test"))
    message = str(e.value)
    assert str(tmp_path / "empty") in message
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        assert name in message
    assert "127.0.0.1" in message  # the mirror it tried


def test_download_from_a_mirror_verifies_and_stores(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    offline: None,
    mnist_files: SimpleNamespace,
) -> None:
    served = tmp_path / "served"
    table = mnist_files.write(served, gz=False)
    for name in table:  # mirrors serve <name>.gz
        (served / f"{name}.gz").write_bytes(gzip.compress((served / name).read_bytes()))
    monkeypatch.setattr(mnist, "CHECKSUMS", table)
    monkeypatch.setattr(mnist, "MIRRORS", ("http://127.0.0.1:9/", served.as_uri() + "/"))
    root = tmp_path / "root"
    d = load(DataSpec("mnist", root=str(root), split="test", n=5))
    assert d.n == 5
    assert sorted(p.name for p in root.glob("*.gz")) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    # a mirror serving other content is not trusted
    monkeypatch.setitem(mnist.CHECKSUMS, "train-labels-idx1-ubyte", "f" * 64)
    with pytest.raises(FileNotFoundError, match="checksum mismatch"):
        load(DataSpec("mnist", root=str(root), split="train"))
    assert not (root / "train-labels-idx1-ubyte.gz").exists()
