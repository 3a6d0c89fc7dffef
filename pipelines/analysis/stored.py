"""The analysis as stored beside the fits: ``summary.parquet`` and ``scales.parquet`` written
(atomically, with the store's writer) and read back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.analysis.columns import SUMMARY_SCHEMA
from pipelines.analysis.scales import SCALE_RULE, SCALES_SCHEMA, scales_table
from pipelines.analysis.summary import summarize
from pipelines.results.store import Store

__all__ = [
    "read_scales",
    "read_summary",
    "read_table",
    "scales_path",
    "summary_path",
    "update_scales",
    "update_summary",
    "write_scales",
    "write_summary",
    "write_table",
]


def summary_path(store: Store) -> str:
    """Where the summary of ``store``'s survey lives (a path on ``store.fs``)."""
    return f"{store.root}/summary.parquet"


def write_table(store: Store, path: str, frame: pd.DataFrame, schema: pa.Schema) -> str:
    """Store ``frame`` with ``schema`` at ``path`` on ``store.fs``, atomically; returns it."""
    rows = pa.Table.from_pandas(frame, schema=schema, preserve_index=False).to_pylist()
    store._write(rows, schema, path)  # the store's one atomic writer
    return path


def read_table(store: Store, path: str, schema: pa.Schema) -> pd.DataFrame | None:
    """The table stored at ``path`` on ``store.fs``, or ``None`` when there is none yet."""
    if store.fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    return pq.read_table(path, filesystem=store.fs, schema=schema).to_pandas()


def write_summary(store: Store, summary: pd.DataFrame) -> str:
    """Store ``summary`` as ``<out>/<name>/summary.parquet``, atomically; returns the path."""
    return write_table(store, summary_path(store), summary, SUMMARY_SCHEMA)


def read_summary(store: Store) -> pd.DataFrame | None:
    """The stored summary, or ``None`` when there is none yet."""
    return read_table(store, summary_path(store), SUMMARY_SCHEMA)


def update_summary(
    store: Store,
    fit_ids: Sequence[str] | None = None,
    warn: Callable[[str], None] | None = None,
    **options: Any,
) -> pd.DataFrame | None:
    """Summarise the stored fits and write ``summary.parquet`` (``options``: see ``summarize``),
    and ``scales.parquet`` when the survey has a noise-floor axis (``pipelines.analysis.scales``).

    Called at the end of ``survey run``; a failure here is reported through ``warn`` (when
    given) rather than raised, since the fits themselves are safely stored.
    """
    try:
        frame = summarize(store.read_fits(), fit_ids=fit_ids, **options)
        write_summary(store, frame)
        if options.get("rule") != SCALE_RULE:
            update_scales(store, frame)  # scales.parquet, for a survey across noise floors
        return frame
    except Exception as exc:
        if warn is None:
            raise
        warn(f"summary.parquet not written ({type(exc).__name__}: {exc}); "
             f"run `survey analyze {store.survey}` to write it")
        return None


def scales_path(store: Store) -> str:
    """Where the scales table of ``store``'s survey lives (a path on ``store.fs``)."""
    return f"{store.root}/scales.parquet"


def write_scales(store: Store, table: pd.DataFrame) -> str:
    """Store ``table`` (``scales_table``) as ``<out>/<name>/scales.parquet``, atomically."""
    return write_table(store, scales_path(store), table, SCALES_SCHEMA)


def read_scales(store: Store) -> pd.DataFrame | None:
    """The stored scales table, or None when the survey has none."""
    return read_table(store, scales_path(store), SCALES_SCHEMA)


def update_scales(store: Store, per_floor: pd.DataFrame) -> str | None:
    """Write ``scales.parquet`` from a summary grouped by floor when some group has a floor;
    returns its path, or None (no noise-floor axis: nothing written)."""
    table = scales_table(per_floor)
    return write_scales(store, table) if len(table) else None
