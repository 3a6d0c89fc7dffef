"""Datasets by name: one entry point, ``load(DataSpec) -> Dataset``, and one registry."""

from mflow.datasets import (  # noqa: F401  (register)
    arrays,
    folder,
    images,
    manifolds,
    mnist,
    synthetic,
    toys,
)
from mflow.datasets.arrays import check_enough_rows, register_table_reader
from mflow.datasets.registry import DATA_VERSIONS, DATASETS, Dataset, load, register, sample_shape

__all__ = [
    "DATASETS",
    "DATA_VERSIONS",
    "Dataset",
    "check_enough_rows",
    "load",
    "register",
    "register_table_reader",
    "sample_shape",
]
