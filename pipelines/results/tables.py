"""A survey's tables for notebooks: ``fits, curves, summary, baselines = load(NAME, out=...)``.

Example (in a notebook)::

    from pipelines.results import load

    r = load("quickstart", out="results")
    r.summary[["group", "true_dim", "estimate", "settled", "answer"]]  # answer: if settled
    r.baselines.pivot(index="group", columns="estimator", values="estimate")

It also says where a survey's results are: ``default_out`` (the results folder when none is
given) and ``is_job_file`` (a ``NAME|JOB.yaml`` argument that names a job file), the one
place the ``survey`` commands take them from. The table readers are imported when ``load``
runs, so importing this module for those two costs nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Results", "default_out", "is_job_file", "load"]


def default_out() -> str:
    """Where surveys' results live when no ``--out``/``out`` is given: ``$MFLOW_RESULTS``, else
    ``./results`` (every ``survey`` command and ``load`` use this)."""
    return os.environ.get("MFLOW_RESULTS") or "results"


def is_job_file(target: str | os.PathLike) -> bool:
    """Whether a ``NAME|JOB.yaml`` argument names a job file (a ``.yaml``/``.yml`` name, or any
    file that exists) rather than a survey's name.

    Example:
        >>> is_job_file("jobs/quickstart.yaml"), is_job_file("quickstart")
        (True, False)
    """
    target = os.fspath(target)
    return target.endswith((".yaml", ".yml")) or Path(target).is_file()


class Results(NamedTuple):
    """The tables of one survey (see ``pipelines.results.store``, ``pipelines.analysis.summary`` and
    ``pipelines.analysis.baselines`` for their columns)."""

    fits: pd.DataFrame  # one row per fit
    curves: pd.DataFrame  # one row per fit and logged step
    summary: pd.DataFrame  # one row per group
    baselines: pd.DataFrame  # one row per group and classical estimator (empty if none ran)


def load(name: str | os.PathLike, out: str | os.PathLike | None = None) -> Results:
    """The tables of survey ``name`` (or of the job file ``name`` names) under ``out``.

    ``out`` defaults to ``$MFLOW_RESULTS`` or ``./results``, as for ``survey run``. The summary
    is the stored ``summary.parquet`` (what the last ``survey run``, ``analyze`` or ``report``
    wrote), or, when there is none, computed here from the fits with their own readout rules.
    """
    from pipelines.analysis.baselines import read_baselines
    from pipelines.analysis.stored import read_summary
    from pipelines.analysis.summary import summarize
    from pipelines.job import load_job
    from pipelines.results.store import Store

    target = os.fspath(name)
    if is_job_file(target):
        target = load_job(target).name
    out = os.fspath(out) if out is not None else default_out()
    store = Store(out, target)
    if not store.exists():
        raise FileNotFoundError(f"{target}: no survey of that name under {out} "
                                f"(no {store.fits_dir})")
    fits = store.read_fits()
    summary = read_summary(store)
    if summary is None:
        summary = summarize(fits)
    return Results(fits, store.read_curves(), summary, read_baselines(store))
