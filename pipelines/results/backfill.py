"""MLflow filled in from Parquet (``survey sync-mlflow``): every stored fit whose row names no
active run is recorded, and the row pointed at its new run."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mflow.config import FitSpec
from mflow.fit import FitResult
from pipelines.job import Fit
from pipelines.results.store import Store
from pipelines.results.tracking import Tracker

__all__ = ["Backfill", "backfill", "result_from_row"]


def result_from_row(row: Mapping[str, Any], curve: Sequence[Mapping[str, Any]]) -> FitResult | None:
    """The ``FitResult`` a fits-table row (and its curve rows) was made from; ``None`` for a
    fit that failed without a result."""
    if row["eigenvalues"] is None:
        return None
    return FitResult.from_dict(row, curve)


@dataclass
class Backfill:
    """What ``backfill`` did."""

    fits: int  # rows in the fits table
    present: int  # rows whose MLflow run was there already
    added: int  # rows recorded in MLflow now
    removed: int  # other active runs of stored fits, moved to MLflow's deleted runs


def backfill(store: Store, uri: str) -> Backfill:
    """Record in MLflow at ``uri`` every stored fit whose row names no active run there, and
    point the row at its new run; other active runs of a stored fit (left by a crash between
    recording a fit in MLflow and in Parquet) are deleted. Idempotent: a second call changes
    nothing. Raises MLflow's errors (or ``ConnectionError``) when MLflow cannot be reached;
    rows done so far stay done.
    """
    rows = store.read_table().to_pylist()
    tracker = Tracker(uri, store.survey)
    active = tracker.active_runs()
    missing = [row for row in rows if row["mlflow_run_id"] not in active]
    outcome = Backfill(fits=len(rows), present=len(rows) - len(missing), added=0, removed=0)
    linked = {row["fit_id"]: row["mlflow_run_id"] for row in rows if row not in missing}
    for run_id, fit_id in active.items():
        if fit_id in linked and linked[fit_id] != run_id:
            tracker.client.delete_run(run_id)
            outcome.removed += 1
    if not missing:
        return outcome
    curves: dict[str, list[dict[str, Any]]] = {}
    for point in store.read_curves().to_dict("records"):
        curves.setdefault(point["fit_id"], []).append(point)
    tracker.start_sync(len(missing))
    status = "FAILED"
    try:
        for row in missing:
            fit = Fit(row["fit_id"], FitSpec.from_dict(json.loads(row["config"])),
                      json.loads(row["axes"]))
            result = result_from_row(row, curves.get(row["fit_id"], []))
            run_id = tracker.log_fit(
                fit, result, error=row["error"] if result is None else None,
                retries=row["retries"] or 0, ended_at=row["finished_at"],
            )
            store.set_mlflow_run_id(row["fit_id"], run_id)
            outcome.added += 1
        status = "FINISHED"
    finally:
        try:
            tracker.end_survey(status, {"backfilled": outcome.added})
        except Exception:  # noqa: BLE001 - the error that stopped the loop matters more
            if status == "FINISHED":
                raise
    return outcome
