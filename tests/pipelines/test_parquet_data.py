"""A user's .parquet data file loads through the pipeline's pyarrow reader."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipelines  # noqa: F401  (registers the reader)
from mflow.config import DataSpec
from mflow.datasets import load


def test_parquet_columns_become_features(tmp_path):
    path = tmp_path / "points.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6]}), path)
    data = load(DataSpec("array", path=str(path), standardize=False))
    np.testing.assert_array_equal(data.x, [[1, 4], [2, 5], [3, 6]])


def test_non_numeric_parquet_columns_are_named(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "name": ["x", "y"]}), path)
    with pytest.raises(ValueError, match="name"):
        load(DataSpec("array", path=str(path)))
