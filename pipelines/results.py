"""A survey's tables for notebooks: ``fits, curves, summary, baselines = load(NAME, out=...)``.

Example (in a notebook)::

    from pipelines.results import load

    r = load("quickstart", out="results")
    r.summary[["group", "true_dim", "estimate", "settled", "answer"]]  # answer: if settled
    r.baselines.pivot(index="group", columns="estimator", values="estimate")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from pipelines.analysis import read_summary, summarize
from pipelines.baselines import read_baselines
from pipelines.store import Store

__all__ = ["Results", "load"]


class Results(NamedTuple):
    """The tables of one survey (see ``pipelines.store``, ``pipelines.analysis`` and
    ``pipelines.baselines`` for their columns)."""

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
    target = os.fspath(name)
    if target.endswith((".yaml", ".yml")) or Path(target).is_file():
        from pipelines.spec import load_job

        target = load_job(target).name
    out = os.fspath(out) if out is not None else (os.environ.get("MFLOW_RESULTS") or "results")
    store = Store(out, target)
    if not store.exists():
        raise FileNotFoundError(f"{target}: no survey of that name under {out} "
                                f"(no {store.fits_dir})")
    fits = store.read_fits()
    summary = read_summary(store)
    if summary is None:
        summary = summarize(fits)
    return Results(fits, store.read_curves(), summary, read_baselines(store))
