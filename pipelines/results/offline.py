"""Fits trained away from Ray: export a survey's plan, import what ``mflow.batch`` made of it.

For a machine that has a GPU but no Ray or MLflow (a lone workstation, a batch node):

    survey export JOB.yaml -o plan.json          # the pending fits, with ids and configs
    python -m mflow.batch plan.json -o OUT       # on the GPU machine (needs only mflow)
    survey import JOB.yaml OUT                   # into the Parquet store and MLflow

Import records each result exactly as ``survey run`` does (the same Parquet row, curve and
MLflow child run, under one parent run for the import), and refuses a result whose config is
not a fit of the job, naming the file and the fit. Fits already stored ok are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mflow.batch import read_results
from mflow.config import FitSpec
from mflow.fit import FitResult
from pipelines.analysis.stored import update_summary
from pipelines.execution.background import Background
from pipelines.execution.survey import (
    Reporter,
    SurveyOutcome,
    _flush,
    _open_tracker,
    _Recorder,
    pending_fits,
)
from pipelines.job import Fit, Job, JobError, fit_id, legacy_fit_id, plan
from pipelines.results.store import Store

__all__ = ["ImportOutcome", "export_plan", "import_results"]


def export_plan(job: Job, statuses: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The plan ``mflow.batch`` trains: the job's fits not yet stored ok, in grid order."""
    fits = pending_fits(plan(job), statuses or {})
    return {
        "survey": job.name,
        "fits": [{"fit_id": f.fit_id, "spec": f.spec.to_dict(), "axes": f.axes} for f in fits],
    }


@dataclass
class ImportOutcome:
    imported: int = 0
    already_ok: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    parent_run_id: str | None = None


def _artifacts(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    path = folder / "artifacts.npz"
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as npz:
        return Store.split_artifacts(npz)


def _read(folder: Path, name: str, fits: Mapping[str, Fit]
          ) -> list[tuple[Fit, Any, str | None]]:
    """``(fit, result, note)`` of each line of ``name`` in the batch folder's results."""
    path = folder / "results.jsonl.gz"
    if not path.exists():
        raise JobError(f"{path}: no results file (run `python -m mflow.batch PLAN -o {folder}`)")
    found = []
    for number, line in enumerate(read_results(path), start=1):
        if line.get("survey", name) != name:
            continue  # one batch folder may hold several surveys' fits
        where = f"{path} line {number}"
        try:
            spec = FitSpec.from_dict(line["spec"])
            result = FitResult.from_dict(line["result"])
        except (KeyError, TypeError, ValueError) as exc:
            raise JobError(f"{where}: not a fit result ({exc})") from None
        fid = fit_id(spec)  # a plan exported before ids changed names the fit by its old id
        if line.get("fit_id") not in (fid, legacy_fit_id(spec)) or fid not in fits:
            raise JobError(
                f"{where}: fit {line.get('fit_id')!r} is not a fit of job {name!r} as "
                "configured (was the job file or --set changed after the export?)"
            )
        found.append((fits[fid], result, line.get("note")))
    return found


def import_results(
    job: Job,
    folder: str | os.PathLike,
    out: str,
    tracking_uri: str | None,
    reporter: Reporter | None = None,
) -> ImportOutcome:
    """Record the results ``mflow.batch`` wrote in ``folder`` as fits of ``job``."""
    reporter = reporter or Reporter()
    folder = Path(folder)
    all_fits = plan(job)
    found = _read(folder, job.name, {f.fit_id: f for f in all_fits})
    store = Store(out, job.name)
    store.prepare()
    store.adopt_legacy(all_fits)
    statuses = store.statuses()
    todo = [(f, r, n) for f, r, n in found if statuses.get(f.fit_id) != "ok"]
    outcome = ImportOutcome(already_ok=len(found) - len(todo))
    if not todo:
        return outcome
    survey_outcome = SurveyOutcome(total=len(all_fits), skipped=len(all_fits) - len(todo))
    tracker = _open_tracker(tracking_uri, job, len(all_fits), len(todo), reporter)
    outcome.parent_run_id = tracker.parent_run_id if tracker is not None else None
    writer = Background()  # the recorder writes in its thread, in order, as in a survey run
    recorder = _Recorder(job, [f for f, _, _ in todo], store, tracker, reporter, survey_outcome,
                         writer)
    kept = _artifacts(folder)
    status = "FAILED"
    try:
        for fit, result, note in todo:
            recorder.started(fit.fit_id)
            if note:  # e.g. its pack trained from step 0 (mflow.batch --restart-unresumable)
                recorder.noted(fit.fit_id, note)
            if fit.fit_id in kept:
                recorder.kept(fit.fit_id, kept[fit.fit_id])
            recorder.finished(fit.fit_id, result, 0)
            outcome.imported += 1
        writer.close()  # every fit recorded before the import run is closed
        status = "FINISHED"
    finally:
        _flush(writer)
        if recorder.tracker is not None:
            try:
                recorder.tracker.end_survey(status, survey_outcome.counts)
            except Exception as exc:  # noqa: BLE001 - tracking is best effort
                reporter.warn(f"MLflow: could not close the import run ({exc})")
    outcome.counts = dict(survey_outcome.counts)
    update_summary(store, [f.fit_id for f in all_fits], warn=reporter.warn,
                   **job.analysis.options())
    return outcome
