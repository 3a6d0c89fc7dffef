"""The array loader: each file type, each refusal, subsets and standardisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mflow.config import DataSpec
from mflow.datasets import Dataset, check_enough_rows, load
from mflow.datasets import arrays as arrays_module


def _spec(path: Path, **kw: object) -> DataSpec:
    """The file as it is (standardisation off) unless a test asks otherwise."""
    return DataSpec("array", path=str(path), **{"standardize": False, **kw})


def _npy(tmp_path: Path, x: np.ndarray, name: str = "x.npy") -> Path:
    np.save(tmp_path / name, x)
    return tmp_path / name


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((6, 3), (6, 3)), ((6, 5, 4), (6, 1, 5, 4)), ((6, 2, 5, 4), (6, 2, 5, 4))],
)
def test_npy_shapes_and_dtype(tmp_path: Path, shape: tuple, expected: tuple) -> None:
    x = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    d = load(_spec(_npy(tmp_path, x)))
    assert d.x.shape == expected and d.x.dtype == np.float32
    assert d.true_dim is None and d.name == "array"
    np.testing.assert_array_equal(d.x.reshape(shape), x)


def test_npz_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "two.npz", a=np.zeros((4, 2)), b=np.ones((5, 3)))
    np.savez(tmp_path / "one.npz", only=np.ones((4, 2)))
    assert load(_spec(tmp_path / "two.npz", key="b")).x.shape == (5, 3)
    assert load(_spec(tmp_path / "one.npz")).x.shape == (4, 2)
    with pytest.raises(ValueError, match=r"two.npz: holds arrays \['a', 'b'\]; set data.key"):
        load(_spec(tmp_path / "two.npz"))
    with pytest.raises(ValueError, match="two.npz: no array 'c'"):
        load(_spec(tmp_path / "two.npz", key="c"))


def test_csv_with_and_without_header(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("x,y,z\n1,2,3\n4,5,6.5\n")
    (tmp_path / "n.csv").write_text("1,2\n3,4\n5,6\n")
    np.testing.assert_array_equal(load(_spec(tmp_path / "h.csv")).x, [[1, 2, 3], [4, 5, 6.5]])
    assert load(_spec(tmp_path / "n.csv")).x.shape == (3, 2)
    (tmp_path / "one.csv").write_text("v\n1\n2\n")
    assert load(_spec(tmp_path / "one.csv")).x.shape == (2, 1)


def test_csv_non_numeric_columns_are_named(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("a,b,c\n1,x,3\n4,5,6\n7,8,oops\n")
    with pytest.raises(ValueError, match=r"bad.csv: non-numeric columns: 'b' .*line 2.*'c'"):
        load(_spec(tmp_path / "bad.csv"))
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    with pytest.raises(ValueError, match="ragged.csv: line 2 has 1 fields, expected 2"):
        load(_spec(tmp_path / "ragged.csv"))


def test_parquet_needs_a_registered_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.delitem(arrays_module.TABLE_READERS, ".parquet", raising=False)
    with pytest.raises(ValueError, match="t.parquet: .*register_table_reader"):
        load(_spec(path))
    table = {"a": np.arange(4), "b": np.linspace(0, 1, 4), "flag": np.array([1, 0, 1, 0], bool)}
    monkeypatch.setitem(arrays_module.TABLE_READERS, ".parquet", lambda p: table)
    d = load(_spec(path))
    assert d.x.shape == (4, 3)
    np.testing.assert_allclose(d.x[:, 1], table["b"])
    monkeypatch.setitem(
        arrays_module.TABLE_READERS, ".parquet", lambda p: {**table, "name": np.array(list("abcd"))}
    )
    with pytest.raises(ValueError, match="t.parquet: non-numeric columns: 'name'"):
        load(_spec(path))


def test_register_table_reader_refuses_numpy_suffixes() -> None:
    with pytest.raises(ValueError, match="suffix"):
        arrays_module.register_table_reader(".npy", lambda p: {})


def test_missing_file_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.npy: no such file"):
        load(_spec(tmp_path / "nothere.npy"))
    with pytest.raises(ValueError, match="data.path"):
        load(DataSpec("array"))


def test_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("1 2\n")
    with pytest.raises(ValueError, match=r"x.txt: unsupported file type '.txt'"):
        load(_spec(tmp_path / "x.txt"))


def test_nan_and_inf_rows_are_counted(tmp_path: Path) -> None:
    x = np.zeros((5, 3))
    x[1, 2], x[3, 0], x[3, 1] = np.nan, np.inf, -np.inf
    with pytest.raises(ValueError, match=r"x.npy: 2 of 5 rows contain NaN or inf \(first: row 1"):
        load(_spec(_npy(tmp_path, x)))
    (tmp_path / "n.csv").write_text("a,b\n1,2\nnan,3\n4,5\n")
    with pytest.raises(ValueError, match="n.csv: 1 of 3 rows contain NaN"):
        load(_spec(tmp_path / "n.csv"))


@pytest.mark.parametrize("shape", [(5,), (2, 2, 2, 2, 2)])
def test_wrong_rank(tmp_path: Path, shape: tuple) -> None:
    with pytest.raises(ValueError, match=rf"x.npy: array of shape .* \(rank {len(shape)}\)"):
        load(_spec(_npy(tmp_path, np.zeros(shape))))


def test_too_few_rows_and_empty_dimension(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="x.npy: 1 rows; at least 2"):
        load(_spec(_npy(tmp_path, np.zeros((1, 4)))))
    with pytest.raises(ValueError, match="empty dimension"):
        load(_spec(_npy(tmp_path, np.zeros((4, 0)), "e.npy")))
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="h.csv: 0 rows"):
        load(_spec(tmp_path / "h.csv"))


def test_non_numeric_arrays(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="s.npy: non-numeric data"):
        load(_spec(_npy(tmp_path, np.array([["a", "b"], ["c", "d"]]), "s.npy")))
    with pytest.raises(ValueError, match="o.npy: cannot be read without pickle"):
        load(_spec(_npy(tmp_path, np.array([[1, None], [2, 3]], dtype=object), "o.npy")))


def test_subset_is_seeded_and_all_rows_when_fewer(tmp_path: Path) -> None:
    x = np.arange(40.0).reshape(20, 2)
    path = _npy(tmp_path, x)
    a, b, c = (load(_spec(path, n=5, seed=s)) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    rows = a.factors["row"]
    assert np.all(np.diff(rows) > 0)  # file order
    np.testing.assert_array_equal(a.x, x[rows])
    assert load(_spec(path, n=100)).n == 20


def test_standardize(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(3.0, 5.0, size=(50, 4)) * [1, 2, 3, 4]
    path = _npy(tmp_path, x)
    kept = load(_spec(path))
    x = x[kept.factors["row"]]  # the rows trained on (a tenth is held out)
    np.testing.assert_allclose(kept.x, x, rtol=1e-6)  # off: as it is
    d = load(DataSpec("array", path=str(path))).x.astype(np.float64)  # the default: on
    np.testing.assert_allclose(d.mean(axis=0), 0, atol=1e-5)
    # the spread along the first principal axis is 1
    np.testing.assert_allclose(np.linalg.eigvalsh(np.cov(d.T, bias=True))[-1], 1, rtol=1e-5)
    # one scale for all coordinates: the ratios of their spreads are kept
    np.testing.assert_allclose(d.std(axis=0) / d.std(axis=0)[0], x.std(0) / x.std(0)[0], rtol=1e-4)
    with pytest.raises(ValueError, match="constant"):
        load(_spec(_npy(tmp_path, np.ones((3, 2)), "c.npy"), standardize=True))


def test_check_enough_rows() -> None:
    data = Dataset("a", np.zeros((8, 2)))
    check_enough_rows(data, batch_size=8)
    with pytest.raises(ValueError, match="8 points, fewer than one batch"):
        check_enough_rows(data, batch_size=9)


def test_rows_beyond_n_are_held_out_and_scaled_alike(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((300, 3)) * [5.0, 1.0, 0.1] + 7.0
    path = tmp_path / "points.npy"
    np.save(path, x)
    data = load(DataSpec("array", path=str(path), n=200))
    rows = data.factors["row"]
    assert data.x.shape == (200, 3) and data.heldout.shape == (100, 3)
    others = np.setdiff1d(np.arange(300), rows)
    mean = x[rows].mean(axis=0)
    scale = (x[rows[0]] - mean)[0] / data.x[0, 0]
    expected = np.sort((x[others] - mean) / scale, axis=0)
    np.testing.assert_allclose(np.sort(data.heldout, axis=0), expected, rtol=1e-5, atol=1e-5)
    assert load(DataSpec("array", path=str(path), n=300)).heldout is None
