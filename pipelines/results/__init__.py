"""Results: a survey's record in Parquet (``store``), mirrored in MLflow (``tracking``), fed by
offline batches (``offline``) and read back for notebooks (``load``).

``from pipelines.results import load`` is the notebook's entry point (``tables``).
"""

from pipelines.results.tables import Results, default_out, is_job_file, load

__all__ = ["Results", "default_out", "is_job_file", "load"]
