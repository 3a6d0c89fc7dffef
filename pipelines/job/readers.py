"""The pipeline's readers of users' data files, registered into ``mflow.datasets`` on request.

``mflow`` reads ``.npy``, ``.npz`` and ``.csv`` itself and never imports pyarrow, so a
``.parquet`` data file (``dataset: array``) is read through a table reader the pipeline
registers (``mflow.datasets.register_table_reader``). Importing ``pipelines`` registers
nothing: the library behaves the same whatever was imported. ``register_readers()`` is called,
explicitly, by each entry point that loads users' data, in every process that does:

- the driver: ``survey`` (``pipelines.cli.app.main``), the data checks of ``survey validate`` and
  ``survey run`` (``pipelines.job.check_data``), the pack sizing (``pipelines.execution.sizing``),
  the quality of a fit's samples (``pipelines.analysis.quality``), the classical baselines
  (``pipelines.analysis.baselines``, also in their Ray tasks). ``survey import`` loads no data;
- the Ray workers: a survey trial (``pipelines.execution.trial``) and a data-parallel fit's
  workers (``pipelines.execution.parallel``).

It is idempotent and cheap (pyarrow is imported when a ``.parquet`` file is read).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mflow.datasets import register_table_reader
from mflow.datasets.arrays import TABLE_READERS

__all__ = ["parquet_columns", "parquet_shape", "register_readers"]


def parquet_columns(path: str) -> dict[str, np.ndarray]:
    """A user's ``.parquet`` data file as ``{column: 1-D array}`` (mflow checks and stacks)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def parquet_shape(path: str | Path) -> tuple[int, int] | None:
    """A ``.parquet`` file's rows and columns from its footer (no column read); None when it
    cannot be read (the loader names the problem)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
    except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
        return None
    return meta.num_rows, meta.num_columns


def register_readers() -> None:
    """Let ``mflow.datasets`` read ``.parquet`` data files (through pyarrow), in this process.

    Example:
        >>> register_readers(); register_readers()  # a second call changes nothing
        >>> TABLE_READERS[".parquet"] is parquet_columns
        True
    """
    if TABLE_READERS.get(".parquet") is not parquet_columns:
        register_table_reader(".parquet", parquet_columns)
