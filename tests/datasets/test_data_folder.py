"""The image-folder loader (``images``): shapes and values, classes, and each refusal naming
the file; and the all-rows default of a user's data (``data.n`` left out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mflow.config import DataSpec
from mflow.datasets import load
from mflow.datasets.folder import index_folder


def _grey(folder: Path, name: str, value: int, size: tuple[int, int] = (6, 4)) -> Path:
    """A grey PNG of ``size`` (width, height), every pixel ``value``, but pixel (0, 0) black."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.full(size[::-1], value, dtype=np.uint8)
    pixels[0, 0] = 0
    Image.fromarray(pixels, mode="L").save(folder / name)
    return folder / name


def _spec(folder: Path, **kw: object) -> DataSpec:
    return DataSpec("images", path=str(folder), **kw)


def test_grey_images_load_as_c_h_w_in_0_1(tmp_path: Path) -> None:
    for i in range(3):
        _grey(tmp_path, f"{i}.png", 51 * (i + 1))
    d = load(_spec(tmp_path))
    assert d.x.shape == (3, 1, 4, 6) and d.x.dtype == np.float32 and d.is_image
    np.testing.assert_allclose(d.x[:, 0, 1, 1], [0.2, 0.4, 0.6], rtol=1e-6)
    assert d.x[:, 0, 0, 0].tolist() == [0, 0, 0] and d.labels is None
    assert d.heldout is None  # every image trained on, none held out


def test_rgb_images_keep_their_channels_and_a_grey_one_becomes_rgb(tmp_path: Path) -> None:
    Image.new("RGB", (5, 3), (255, 0, 51)).save(tmp_path / "a.png")
    Image.new("RGB", (5, 3), (0, 255, 0)).save(tmp_path / "b.jpg", quality=100)
    _grey(tmp_path, "c.png", 255, size=(5, 3))
    d = load(_spec(tmp_path))
    assert d.x.shape == (3, 3, 3, 5)
    np.testing.assert_allclose(d.x[0, :, 1, 1], [1.0, 0.0, 0.2], atol=1e-6)
    np.testing.assert_allclose(d.x[1, :, 1, 1], [0.0, 1.0, 0.0], atol=0.02)  # JPEG
    np.testing.assert_allclose(d.x[2, :, 1, 1], [1.0, 1.0, 1.0])


def test_class_folders_give_labels_and_data_classes_keeps_some(tmp_path: Path) -> None:
    for label, count in (("3", 4), ("7", 2)):
        for i in range(count):
            _grey(tmp_path / label, f"{i}.png", 10 * int(label))
    d = load(_spec(tmp_path))
    assert d.labels.tolist() == [3, 3, 3, 3, 7, 7]
    assert load(_spec(tmp_path, classes=(7,))).labels.tolist() == [7, 7]
    two = load(_spec(tmp_path, classes=(3,), n=2))  # n per class, as MNIST's
    assert two.labels.tolist() == [3, 3] and len(two.heldout) == 2
    with pytest.raises(ValueError, match=r"class 5 not in the data.*folders of .* are 3: 3, 7: 7"):
        load(_spec(tmp_path, classes=(5,)))
    named = tmp_path / "named"
    for name in ("dog", "cat"):
        _grey(named / name, "x.png", 9)
        _grey(named / name, "y.png", 9)
    assert load(_spec(named)).labels.tolist() == [0, 0, 1, 1]  # cat, dog: sorted names


def test_classes_of_a_folder_without_class_folders_are_refused(tmp_path: Path) -> None:
    _grey(tmp_path, "a.png", 1)
    _grey(tmp_path, "b.png", 2)
    with pytest.raises(ValueError, match="data.classes: .* has no class sub-folders"):
        load(_spec(tmp_path, classes=(0,)))


def test_the_index_reads_headers_only(tmp_path: Path) -> None:
    _grey(tmp_path, "a.png", 1)
    _grey(tmp_path, "b.png", 2)
    (tmp_path / "b.png").write_bytes((tmp_path / "b.png").read_bytes()[:60])  # header kept
    index = index_folder(tmp_path)
    assert index.rows == 2 and index.shape == (1, 4, 6)
    with pytest.raises(ValueError, match=r"b.png: not a readable PNG or JPEG image"):
        load(_spec(tmp_path))  # decoding it fails, naming it


def _mixed_sizes(tmp_path: Path) -> None:
    _grey(tmp_path, "a.png", 1)
    _grey(tmp_path, "b.png", 1, size=(7, 4))


def _not_an_image(tmp_path: Path) -> None:
    _grey(tmp_path, "a.png", 1)
    (tmp_path / "notes.txt").write_text("hello")


def _corrupt(tmp_path: Path) -> None:
    _grey(tmp_path, "a.png", 1)
    (tmp_path / "b.png").write_bytes(b"not a png at all")


def _no_images(tmp_path: Path) -> None:
    (tmp_path / ".hidden").write_text("")


def _one_image(tmp_path: Path) -> None:
    _grey(tmp_path, "a.png", 1)


def _loose_beside_classes(tmp_path: Path) -> None:
    _grey(tmp_path / "cats", "a.png", 1)
    _grey(tmp_path, "b.png", 1)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_mixed_sizes, r"b.png: 7x4 pixels \(width x height\), but .*a.png is 6x4; every image"),
        (_not_an_image, r"notes.txt: not an image file"),
        (_corrupt, r"b.png: not a readable PNG or JPEG image"),
        (_no_images, r"no image files"),
        (_one_image, r": 1 image; at least 2 are needed"),
        (_loose_beside_classes, r"b.png: a file beside class sub-folders \(cats/"),
    ],
    ids=lambda v: getattr(v, "__name__", "")[1:],
)
def test_bad_folders_are_refused_naming_the_file(tmp_path: Path, make, message: str) -> None:
    make(tmp_path)
    with pytest.raises(ValueError, match=message):
        load(_spec(tmp_path))


def test_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="gone: no such folder"):
        load(_spec(tmp_path / "gone"))


def test_a_users_rows_are_all_used_unless_data_n_is_given(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((2500, 3)))
    spec = DataSpec("array", path=str(tmp_path / "x.npy"))
    every = load(spec)  # every row: trained on, or held out for the per-point readout
    assert every.n == 2300 and len(every.heldout) == 200
    rows = every.factors["row"]
    assert len(np.unique(rows)) == 2300 and np.all(np.diff(rows) > 0)
    assert load(DataSpec("array", path=str(tmp_path / "x.npy"), n=2500)).heldout is None
    some = load(DataSpec("array", path=str(tmp_path / "x.npy"), n=2000))
    assert some.n == 2000 and len(some.heldout) == 200
    assert load(DataSpec("sine")).n == 2000  # generated data keep their default


def test_table_columns_are_chosen_by_name(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    d = load(DataSpec("array", path=str(tmp_path / "t.csv"), columns=("c", "a"),
                      standardize=False))
    np.testing.assert_array_equal(d.x, [[3, 1], [6, 4]])
    with pytest.raises(ValueError, match=r"t.csv: no column 'z' \(data.columns\); it has 'a', 'b'"):
        load(DataSpec("array", path=str(tmp_path / "t.csv"), columns=("a", "z")))
    (tmp_path / "n.csv").write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match="n.csv: data.columns names columns, but the file has no"):
        load(DataSpec("array", path=str(tmp_path / "n.csv"), columns=("a",)))
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="x.npy: data.columns is for table files"):
        load(DataSpec("array", path=str(tmp_path / "x.npy"), columns=("a",)))
