"""Everything around many fits: job files, Ray execution, Parquet, MLflow, analysis, reports.

Importing it changes nothing in ``mflow``: readers of users' ``.parquet`` data files are
registered by the entry points that load data (``pipelines.job.readers.register_readers``).
"""
