"""Everything around many fits: job files, Ray execution, Parquet, MLflow, analysis, reports."""

from mflow.datasets import register_table_reader


def _parquet_columns(path: str) -> dict:
    """A user's ``.parquet`` data file as ``{column: 1-D array}`` (mflow checks and stacks)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return {name: table.column(name).to_numpy() for name in table.column_names}


# mflow reads numpy and csv files itself; parquet comes through pyarrow, which mflow must not
# import. Registered on import, so the driver and every Ray worker can load such files.
register_table_reader(".parquet", _parquet_columns)
