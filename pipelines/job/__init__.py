"""The job: a survey's YAML file, validated and expanded into fits with stable ids.

The first stage of the flow job -> execution -> results -> analysis -> report: nothing here
starts Ray or writes results. ``jobfile`` reads and validates a job against ``schema`` (the
config fields' own bounds and choices, from ``mflow.config``), ``grid`` expands it into fits,
``identity`` names each fit, ``datafiles`` checks the data they will read and ``readers``
registers the pipeline's readers of users' data files.
"""

from pipelines.job.datafiles import check_data
from pipelines.job.errors import JobError, masked
from pipelines.job.grid import SHORT_AXES, Axis, Fit, count, expand, plan
from pipelines.job.identity import NOT_IN_FIT_ID, data_checksum, fit_id, legacy_fit_id
from pipelines.job.jobfile import Job, apply_overrides, load_job, parse_job
from pipelines.job.schema import Analysis, Resources, check_name

__all__ = [
    "NOT_IN_FIT_ID",
    "SHORT_AXES",
    "Analysis",
    "Axis",
    "Fit",
    "Job",
    "JobError",
    "Resources",
    "apply_overrides",
    "check_data",
    "check_name",
    "count",
    "data_checksum",
    "expand",
    "fit_id",
    "legacy_fit_id",
    "load_job",
    "masked",
    "parse_job",
    "plan",
]
