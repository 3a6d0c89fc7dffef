"""A user's own array file as a dataset: ``.npy``, ``.npz``, ``.csv``, or a registered table type.

``mflow`` never imports pyarrow or pandas, so ``.parquet`` (or any other table format) is read
through a reader registered with ``register_table_reader``; the survey pipeline registers a
pyarrow-based one for ``.parquet``. Without it, a ``.parquet`` file is refused with a message
saying so.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from mflow.config import DataSpec
from mflow.datasets.registry import Dataset, register

__all__ = [
    "ARRAY_VERSION",
    "HELDOUT_ROWS",
    "HELDOUT_SHARE",
    "MIN_ROWS",
    "STANDARDIZE_VERSION",
    "TABLE_READERS",
    "TableReader",
    "array",
    "check_enough_rows",
    "csv_shape",
    "drawn",
    "drawn_counts",
    "held_back",
    "principal_scale",
    "read_array",
    "register_table_reader",
    "standardize",
]

HELDOUT_ROWS = 200  # most rows kept aside for per-point readouts (mflow.jacobian)
HELDOUT_SHARE = 10  # with data.n unset, one row in this many is held out (at most HELDOUT_ROWS)
MIN_ROWS = 2  # fewest rows a file may have; check_enough_rows compares with the batch size
TableReader = Callable[[Path], Mapping[str, np.ndarray]]  # path -> {column name: 1-D values}
TABLE_READERS: dict[str, TableReader] = {}
_NUMPY_SUFFIXES = (".npy", ".npz")


def register_table_reader(suffix: str, reader: TableReader) -> None:
    """Read files ending in ``suffix`` with ``reader(path) -> {column: 1-D array}``.

    The columns are checked here (numeric, equal length) and stacked in their order into
    ``(n, D)``. Registering a suffix again replaces its reader; ``.npy`` and ``.npz`` are
    numpy's and cannot be replaced. A registered ``.csv`` reader replaces the built-in one.

    Example:
        >>> register_table_reader(".demo", lambda path: {"a": np.zeros(3), "b": np.ones(3)})
        >>> TABLE_READERS.pop(".demo") is not None
        True
    """
    suffix = suffix.lower()
    if not suffix.startswith(".") or suffix in _NUMPY_SUFFIXES:
        raise ValueError(
            f"register_table_reader: suffix must start with '.' and not be "
            f"{' or '.join(_NUMPY_SUFFIXES)}, got {suffix!r}"
        )
    TABLE_READERS[suffix] = reader


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_problem(path: Path, names: list[str], skip: int) -> str:
    """Say which columns or rows of a CSV that ``np.loadtxt`` refused are not numeric."""
    bad: dict[int, tuple[str, int]] = {}
    with open(path, newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if line <= skip or not row:
                continue
            if len(row) != len(names):
                return f"{path}: line {line} has {len(row)} fields, expected {len(names)}"
            for j, cell in enumerate(row):
                if j not in bad and not _is_number(cell):
                    bad[j] = (cell, line)
    if not bad:
        return f"{path}: could not be read as numeric CSV"
    cols = ", ".join(
        f"{names[j]!r} (e.g. {cell!r} on line {line})" for j, (cell, line) in sorted(bad.items())
    )
    return f"{path}: non-numeric columns: {cols}"


def _is_header(cells: Sequence[str]) -> bool:
    """A CSV file's first line is a header when any of its fields is not a number."""
    return not all(_is_number(cell) for cell in cells)


def csv_shape(path: str | os.PathLike, columns: Sequence[str] | None = None) -> tuple[int, int]:
    """The ``(rows, columns)`` a ``.csv`` file gives ``read_array`` (``columns``: how many
    are chosen), from its first line and a count of the non-empty others, no number parsed;
    ``OSError`` when it cannot be read, ``ValueError`` when it is empty.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
        >>> _ = p.write_text("a,b,c\\n1,2,3\\n4,5,6\\n")
        >>> csv_shape(p), csv_shape(p, ["c"])
        ((2, 3), (2, 1))
    """
    with open(path, "rb") as f:
        first = next(csv.reader([f.readline().decode(errors="replace")]), [])
        rows = sum(1 for line in f if line.strip())
    if not first:
        raise ValueError(f"{path}: empty file")
    return rows + (not _is_header(first)), len(first) if columns is None else len(columns)


def _read_csv(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """Comma-separated numbers and the column names of a header line (None without one)."""
    with open(path, newline="") as f:
        first = next(csv.reader(f), [])
    if not first:
        raise ValueError(f"{path}: empty file")
    header = _is_header(first)
    names = [c.strip() for c in first] if header else [f"column {j}" for j in range(len(first))]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            x = np.loadtxt(path, delimiter=",", skiprows=int(header), ndmin=2)
    except ValueError:
        raise ValueError(_csv_problem(path, names, int(header))) from None
    return x, names if header else None


def _chosen(
    path: Path, table: Mapping[str, np.ndarray], columns: Sequence[str] | None
) -> Mapping[str, np.ndarray]:
    """The ``columns`` of ``table`` in that order (``data.columns``; None: all of them)."""
    if columns is None:
        return table
    repeated = sorted({c for c in columns if list(columns).count(c) > 1})
    if repeated:
        raise ValueError(f"data.columns: {', '.join(map(repr, repeated))} given twice")
    missing = [c for c in columns if c not in table]
    if missing:
        raise ValueError(
            f"{path}: no column {', '.join(map(repr, missing))} (data.columns); it has "
            f"{', '.join(map(repr, table))}"
        )
    return {c: table[c] for c in columns}


def _read_table(path: Path, columns: Sequence[str] | None) -> np.ndarray:
    """A ``.csv`` file or one of a registered table type, its ``columns`` stacked into
    ``(n, D)``."""
    reader = TABLE_READERS.get(path.suffix.lower())
    if reader is not None:
        return _stack_columns(path, _chosen(path, reader(path), columns))
    x, names = _read_csv(path)
    if columns is None:
        return x
    if names is None:
        raise ValueError(
            f"{path}: data.columns names columns, but the file has no header line naming them"
        )
    return _stack_columns(path, _chosen(path, dict(zip(names, x.T, strict=True)), columns))


def _stack_columns(path: Path, table: Mapping[str, np.ndarray]) -> np.ndarray:
    columns = {name: np.asarray(values) for name, values in table.items()}
    if not columns:
        raise ValueError(f"{path}: no columns")
    bad = [name for name, v in columns.items() if not _numeric(v.dtype) or v.ndim != 1]
    if bad:
        good = [name for name in columns if name not in bad]
        hint = f"; data.columns may choose among {good}" if good else ""
        raise ValueError(f"{path}: non-numeric columns: {', '.join(map(repr, bad))}{hint}")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"{path}: columns of different lengths {sorted(lengths)}")
    return np.stack([v.astype(np.float64) for v in columns.values()], axis=1)


def _numeric(dtype: np.dtype) -> bool:
    return (np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)) or (
        dtype == np.bool_
    )


def _read_numpy(path: Path, key: str | None) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as e:  # object arrays need pickle, which is refused
        raise ValueError(f"{path}: cannot be read without pickle ({e})") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        names = list(loaded.files)
        if key is None:
            if len(names) != 1:
                raise ValueError(f"{path}: holds arrays {names}; set data.key to one of them")
            key = names[0]
        if key not in names:
            raise ValueError(f"{path}: no array {key!r} (data.key); it holds {names}")
        try:
            return loaded[key]
        except ValueError as e:
            raise ValueError(f"{path}: array {key!r} cannot be read without pickle ({e})") from None


def read_array(
    path: str | os.PathLike, key: str | None = None, columns: Sequence[str] | None = None
) -> np.ndarray:
    """Read and check a data file: float64 of shape ``(n, D)`` or ``(n, C, H, W)``.

    ``.npy``; ``.npz`` (the array ``key``, which may be omitted when there is only one);
    ``.csv`` (comma-separated numbers; a first line with any non-numeric field is a header);
    any suffix with a registered table reader (``register_table_reader``). Of a table, the
    ``columns`` named (in their order; a ``.csv`` needs a header line), else every column,
    so write tables without an index column or leave it out of ``columns``. An
    ``(n, H, W)`` array becomes ``(n, 1, H, W)``. Raises ``FileNotFoundError`` for a missing
    file and ``ValueError``, naming the file, for: an unsupported suffix, ``columns`` of a
    numpy file, a missing column (with the columns the file has), non-numeric data or
    columns, a rank other than 2, 3 or 4, an empty dimension, fewer than ``MIN_ROWS`` rows,
    or NaN/inf values (with the number of rows that hold them).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npy"
        >>> np.save(p, np.zeros((5, 8, 8), dtype=np.uint8))
        >>> read_array(p).shape
        (5, 1, 8, 8)
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (data.path)")
    suffix = path.suffix.lower()
    if suffix in _NUMPY_SUFFIXES:
        if columns is not None:
            raise ValueError(
                f"{path}: data.columns is for table files (.csv, .parquet); this is a numpy "
                "file, so leave it out"
            )
        x = _read_numpy(path, key)
    elif suffix in TABLE_READERS or suffix == ".csv":
        x = _read_table(path, columns)
    elif suffix == ".parquet":
        raise ValueError(
            f"{path}: reading .parquet needs a table reader, as mflow does not import pyarrow; "
            f"the survey pipeline registers one, or call "
            f"mflow.datasets.register_table_reader('.parquet', reader)"
        )
    else:
        known = sorted({*_NUMPY_SUFFIXES, ".csv", *TABLE_READERS})
        raise ValueError(f"{path}: unsupported file type {suffix!r}; supported: {known}")
    return _checked(path, x)


def _checked(path: Path, x: np.ndarray) -> np.ndarray:
    if not _numeric(x.dtype):
        raise ValueError(f"{path}: non-numeric data (dtype {x.dtype})")
    if x.ndim not in (2, 3, 4):
        raise ValueError(
            f"{path}: array of shape {x.shape} (rank {x.ndim}); expected (n, D) vectors, or "
            f"(n, H, W) or (n, C, H, W) images"
        )
    if 0 in x.shape[1:]:
        raise ValueError(f"{path}: array of shape {x.shape} has an empty dimension")
    if x.shape[0] < MIN_ROWS:
        raise ValueError(f"{path}: {x.shape[0]} rows; at least {MIN_ROWS} are needed")
    x = x.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
    if len(bad):
        raise ValueError(
            f"{path}: {len(bad)} of {len(x)} rows contain NaN or inf (first: row {bad[0]}, "
            f"counting from 0); remove or fill them"
        )
    return x[:, None] if x.ndim == 3 else x


# The loader version (mflow.datasets.registry) of the datasets that standardize: 2 since the
# scale is the principal std rather than the overall std.
STANDARDIZE_VERSION = 2
# The ``array`` loader's version: 3 since a fit with ``data.n`` unset holds a slice out
# (``held_back``) rather than training on every row.
ARRAY_VERSION = 3


def standardize(x: np.ndarray, what: str) -> np.ndarray:
    """``(x - mean) / s``: centre each column, then divide by ``s``, the standard deviation
    along the first principal axis (``principal_scale``).

    Example:
        >>> standardize(np.array([[0.0, 0.0], [2.0, 4.0]]), "demo").round(3).tolist()
        [[-0.447, -0.894], [0.447, 0.894]]
    """
    mean, scale = principal_scale(x, what)
    return (x - mean) / scale


def principal_scale(x: np.ndarray, what: str) -> tuple[np.ndarray, np.floating]:
    """The mean point of ``x`` and ``s``, the square root of its covariance's top eigenvalue:
    the two numbers ``standardize`` uses, for moving other points of the same data alike
    (held-out rows, new points given to an estimator).

    One number for all coordinates, so the shape of the data (and its dimension) is kept and
    the data's widest spread becomes 1: the units the default noise schedule and readout
    floor are written in. Why the first principal axis and not the overall std
    ``sqrt(mean((x - mean)^2))``: the overall std of an m-dimensional cloud rotated into
    ``R^D`` shrinks as ``sqrt(m / D)``, so the same manifold would grow with the dimension
    of the space it sits in (a helix in ``R^50`` came out 4 times larger than in ``R^3``);
    the principal std does not change under that embedding. ``what`` names the data in the
    error raised for constant data.
    """
    mean = x.mean(axis=0)
    flat = (x - mean).reshape(len(x), -1).astype(np.float64)
    # The Gram matrix on the smaller side has the covariance's non-zero eigenvalues (times n).
    gram = flat.T @ flat if flat.shape[1] <= flat.shape[0] else flat @ flat.T
    top = float(np.linalg.eigvalsh(gram)[-1]) / len(x) if flat.size else 0.0
    if not top > 1e-24:
        raise ValueError(f"{what}: constant data cannot be standardized")
    return mean, np.sqrt(top).astype(x.dtype)


def check_enough_rows(dataset: Dataset, batch_size: int) -> None:
    """Refuse a dataset with fewer points than one batch, naming both numbers.

    The loaders do not know the batch size (``read_array`` only asks for ``MIN_ROWS``);
    whoever does, calls this.

    Example:
        >>> check_enough_rows(Dataset("a", np.zeros((3, 2))), batch_size=4)
        Traceback (most recent call last):
        ...
        ValueError: dataset 'a' has 3 points, fewer than one batch (train.batch_size = 4)
    """
    if dataset.n < batch_size:
        raise ValueError(
            f"dataset {dataset.name!r} has {dataset.n} points, fewer than one batch "
            f"(train.batch_size = {batch_size})"
        )


def held_back(n_rows: int) -> int:
    """How many of a user's ``n_rows`` a fit holds out when ``data.n`` is unset: one in
    ``HELDOUT_SHARE``, at most ``HELDOUT_ROWS``, so that per-point readouts read points the
    fit did not train on (none of a file of fewer than ``HELDOUT_SHARE`` rows).

    Example:
        >>> held_back(9), held_back(500), held_back(50_000)
        (0, 50, 200)
    """
    return min(HELDOUT_ROWS, n_rows // HELDOUT_SHARE)


def drawn_counts(n_rows: int, n: int | None) -> tuple[int, int]:
    """How many of a user's ``n_rows`` a fit trains on and how many it holds out (``drawn``),
    without drawing them (a footprint check asks before any row is read).

    Example:
        >>> drawn_counts(2500, None), drawn_counts(2500, 2000), drawn_counts(2500, 2500)
        ((2300, 200), (2000, 200), (2500, 0))
    """
    if n is None:
        return n_rows - held_back(n_rows), held_back(n_rows)
    if n_rows <= n:
        return n_rows, 0
    return n, min(HELDOUT_ROWS, n_rows - n)


def drawn(n_rows: int, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a user's ``n_rows`` that a fit trains on and those it holds out, each in
    file order. With ``n`` None, ``held_back(n_rows)`` rows drawn with ``seed`` are held out
    and the fit trains on all the others; with ``n`` below ``n_rows``, it trains on ``n`` rows
    drawn with ``seed`` and holds up to ``HELDOUT_ROWS`` of the others out; with ``n`` at
    least ``n_rows``, it trains on every row (as ``FlowDimension.fit`` does).

    Example:
        >>> [len(r) for r in drawn(500, None, 0)], [len(r) for r in drawn(500, 100, 0)]
        ([450, 50], [100, 200])
        >>> [r.tolist() for r in drawn(4, 4, 0)]
        [[0, 1, 2, 3], []]
    """
    train, held = drawn_counts(n_rows, n)
    if held == 0 and train == n_rows:
        return np.arange(n_rows), np.arange(0)
    order = np.random.default_rng(seed).permutation(n_rows)
    if n is None:
        return np.sort(order[held:]), np.sort(order[:held])
    return np.sort(order[:train]), np.sort(order[train : train + held])


@register("array", version=ARRAY_VERSION, every_row=True)
def array(spec: DataSpec) -> Dataset:
    """The file ``spec.path`` (array ``spec.key`` of an ``.npz``, columns ``spec.columns`` of a
    table), read by ``read_array``.

    Every row but a held-out slice (one in ``HELDOUT_SHARE``, at most ``HELDOUT_ROWS``),
    unless ``spec.n`` is given and below the file's rows: then ``n`` rows are drawn with
    ``spec.seed`` and up to ``HELDOUT_ROWS`` of the others are held out. Rows are kept in file
    order (``factors['row']`` holds them); the held-out ones are ``Dataset.heldout``, scaled
    alike (see ``drawn``). ``spec.standardize`` (default True) subtracts the mean point and
    divides by the standard deviation along the first principal axis (one number, so the shape
    of the data, and its dimension, are kept; see ``standardize``): the default noise schedule
    and readout floor are in units of a data scale of about 1. Set it False for data already on
    that scale. The true dimension is unknown.
    """
    if spec.path is None:
        raise ValueError("data.path: the 'array' dataset needs the path of a data file")
    x = read_array(spec.path, spec.key, spec.columns)
    rows, others = drawn(len(x), spec.n, spec.seed)
    x, heldout = x[rows], x[others]
    if spec.standardize:
        mean, scale = principal_scale(x, str(spec.path))
        x, heldout = (x - mean) / scale, (heldout - mean) / scale
    return Dataset("array", x, factors={"row": rows}, heldout=heldout)
