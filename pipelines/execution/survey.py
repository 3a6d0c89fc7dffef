"""A survey run, end to end: plan the fits, skip the finished ones, run the rest on Ray, and
record each fit as it ends (MLflow first, for its run id, then Parquet).

The driver records in one background thread (``pipelines.execution.background``), in the order the
fits
ended, so Tune's event loop does not wait on MLflow or the results store; the thread's queue
is bounded, and it is flushed before the survey run ends, also when it was interrupted
(Ctrl-C stops Tune, then the fits that had ended are recorded; a second Ctrl-C while they are
written leaves the rest and says how many fits were not written, which a rerun runs). A write
that fails stops the survey as before (the error reaches Tune's loop at its next event); the
progress display cannot: its errors are logged once and the writes go on (``guarded``).

Resume: a fit whose ``fits/<fit_id>.parquet`` says ``ok`` is skipped (one stored under the id it
had before ``fit_id`` left out the data folder and the logging interval is first renamed). A
fit stored as ``failed`` or ``diverged`` runs again by default (``retry_failed=False`` skips it
too); its new row replaces the old file, so a fit never has two rows. A fit that was running
when an earlier survey run was killed continues from the newest checkpoint that run left; where
that cannot be restored as it was taken, the fit fails (or, with ``restart_unresumable``, trains
from step 0) and its note says why.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mflow.fit import FitResult
from pipelines.analysis.stored import update_summary
from pipelines.execution import checkpoints, cluster, trials
from pipelines.execution.background import Background
from pipelines.job import Fit, Job, JobError, masked, plan
from pipelines.job.footprint import check_footprint
from pipelines.results.records import curve_rows, fit_record
from pipelines.results.store import Store
from pipelines.results.tracking import Tracker

__all__ = ["Reporter", "SurveyOutcome", "guarded", "pending_fits", "run_survey",
           "status_counts"]

logger = logging.getLogger(__name__)


class Reporter:
    """What a survey run tells its user; the command line draws it, tests ignore it."""

    def planned(self, total: int, pending: int) -> None:
        """``pending`` of ``total`` fits are about to run."""

    def started(self, fit: Fit) -> None:
        """A fit's trial started (again, after a retry)."""

    def retrying(self, fit: Fit, error: str, attempt: int) -> None:
        """A fit's trial failed and restarts from its last checkpoint."""

    def ended(self, fit: Fit, status: str, estimate: int | None, error: str | None) -> None:
        """A fit ended and is recorded; ``error`` says why when it did not end ok."""

    def warn(self, message: str) -> None:
        """Something went wrong that does not stop the survey."""


class _Guarded(Reporter):
    """A reporter whose errors never reach the survey: the first is logged, the display goes
    on being called, and every fit is recorded whatever the display does."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.failed = False

    def _tell(self, method: str, *args: Any) -> None:
        try:
            getattr(self.reporter, method)(*args)
        except Exception as exc:  # noqa: BLE001 - a display error must not stop the writes
            if not self.failed:
                self.failed = True
                logger.warning("the progress display failed (%s: %s); the results are "
                               "still written", type(exc).__name__, exc)

    def planned(self, total: int, pending: int) -> None:
        self._tell("planned", total, pending)

    def started(self, fit: Fit) -> None:
        self._tell("started", fit)

    def retrying(self, fit: Fit, error: str, attempt: int) -> None:
        self._tell("retrying", fit, error, attempt)

    def ended(self, fit: Fit, status: str, estimate: int | None, error: str | None) -> None:
        self._tell("ended", fit, status, estimate, error)

    def warn(self, message: str) -> None:
        self._tell("warn", message)


def guarded(reporter: Reporter | None) -> Reporter:
    """``reporter`` (or a silent one) behind a guard that keeps its errors from the survey."""
    return reporter if isinstance(reporter, _Guarded) else _Guarded(reporter or Reporter())


@dataclass
class SurveyOutcome:
    """What a survey run did."""

    total: int  # fits in the survey
    skipped: int  # finished before this run
    ran: int = 0  # fits this run started
    counts: Counter = field(default_factory=Counter)  # status -> fits ended in this run
    missing: int = 0  # fits this run should have ended but did not (interrupted)
    parent_run_id: str | None = None  # the MLflow run of this survey run

    @property
    def interrupted(self) -> bool:
        return self.missing > 0


def pending_fits(
    fits: Sequence[Fit], statuses: Mapping[str, str], retry_failed: bool = True
) -> list[Fit]:
    """The fits still to run: no row yet, or a failed/diverged row when ``retry_failed``."""
    out = []
    for fit in fits:
        status = statuses.get(fit.fit_id)
        if status is None or (status != "ok" and retry_failed):
            out.append(fit)
    return out


class _Recorder(trials.FitEvents):
    """Driver side of the trials: records each ended fit in MLflow, then Parquet, through
    ``writer`` (in its thread, in order; ``started`` and ``progress`` raise its error)."""

    def __init__(self, job: Job, fits: Sequence[Fit], store: Store, tracker: Tracker | None,
                 reporter: Reporter, outcome: SurveyOutcome, writer: Background) -> None:
        self.job = job
        self.fits = {fit.fit_id: fit for fit in fits}
        self.store = store
        self.tracker = tracker
        self.reporter = guarded(reporter)
        self.outcome = outcome
        self.writer = writer
        self.unwritten: set[str] = set()  # fits whose end was heard and row is not written
        self.heard = 0  # fits whose end was heard
        self.started_at: dict[str, datetime] = {}  # fit id -> first start in this run
        self.notes: dict[str, str] = {}

    def started(self, fit_id: str) -> None:
        self.writer.check()
        if fit_id not in self.started_at:
            self.started_at[fit_id] = datetime.now(UTC)
            self.outcome.ran += 1
        self.reporter.started(self.fits[fit_id])

    def progress(self, fit_id: str, metrics: Mapping[str, Any]) -> None:
        self.writer.check()

    def retrying(self, fit_id: str, error: str, attempt: int) -> None:
        self.reporter.retrying(self.fits[fit_id], error, attempt)

    def kept(self, fit_id: str, arrays: Mapping[str, np.ndarray]) -> None:
        # Before the row, which marks the fit done.
        self.writer.submit(self.store.write_artifacts, fit_id, arrays)

    def noted(self, fit_id: str, note: str) -> None:
        self.notes[fit_id] = note
        self.reporter.warn(f"{fit_id}: {note}")

    def finished(self, fit_id: str, result: FitResult, retries: int) -> None:
        self._heard(fit_id)
        self.writer.submit(self._record, self.fits[fit_id], result, None, "", retries,
                           datetime.now(UTC))

    def failed(self, fit_id: str, error: str, detail: str, retries: int) -> None:
        self._heard(fit_id)
        self.writer.submit(self._record, self.fits[fit_id], None, error, detail, retries,
                           datetime.now(UTC))

    def _heard(self, fit_id: str) -> None:
        self.heard += 1
        self.unwritten.add(fit_id)

    def _record(self, fit: Fit, result: FitResult | None, error: str | None, detail: str,
                retries: int, finished_at: datetime) -> None:
        """Record one ended fit (in the writer's thread); ``finished_at``: when it ended."""
        run_id = None
        if self.tracker is not None:
            try:
                run_id = self.tracker.log_fit(
                    fit, result, error=error, detail=detail, retries=retries,
                    ended_at=finished_at,
                )
            except Exception as exc:  # noqa: BLE001 - tracking is best effort; Parquet is not
                self.reporter.warn(
                    f"MLflow: could not record {fit.fit_id} ({type(exc).__name__}: {exc}); "
                    "tracking is off for the rest of this run, mlflow_run_id left empty"
                )
                self.tracker = None
        record = fit_record(
            self.job.name, fit, result, error=error, mlflow_run_id=run_id, retries=retries,
            note=self.notes.pop(fit.fit_id, None), started_at=self.started_at.get(fit.fit_id),
            finished_at=finished_at,
        )
        if self.writer.abandoned:  # Ctrl-C while MLflow was written: the row is a rerun's
            return
        self.store.write(record, curve_rows(self.job.name, fit.fit_id, result))
        self.unwritten.discard(fit.fit_id)
        self.outcome.counts[record["status"]] += 1
        self.reporter.ended(fit, record["status"], record["id_estimate"], record["error"])


def _open_tracker(uri: str | None, job: Job, total: int, pending: int, reporter: Reporter,
                  connecting: Future | None = None) -> Tracker | None:
    """The survey's tracker, its survey run started, or None (no ``uri``, or MLflow failed:
    said through ``reporter``); ``connecting``: the ``Tracker`` already being made."""
    if uri is None:
        return None
    try:
        tracker = connecting.result() if connecting is not None else Tracker(uri, job.name)
        tracker.start_survey(job, total, pending)
        return tracker
    except Exception as exc:  # noqa: BLE001 - a survey runs without tracking rather than not
        reporter.warn(masked(
            f"MLflow at {uri}: {type(exc).__name__}: {exc}; running without tracking "
            "(mlflow_run_id left empty)"
        ))
        return None


def run_survey(
    job: Job,
    out: str,
    tracking_uri: str | None,
    *,
    address: str | None = None,
    retry_failed: bool = True,
    reporter: Reporter | None = None,
    restart_unresumable: bool = False,
) -> SurveyOutcome:
    """Run the fits of ``job`` that are not done yet; see the module docstring for resume.

    Args:
        job: the validated job.
        out: the results folder (path or pyarrow URI); the survey lives in ``out/<name>``.
        tracking_uri: MLflow's tracking URI; ``None`` records no MLflow runs.
        address: a Ray cluster to join; ``None`` starts a local Ray (unless one is running).
        retry_failed: run failed and diverged fits again.
        reporter: told about progress (the command line's progress bar).
        restart_unresumable: a fit whose earlier checkpoint cannot be restored as it was
            taken trains from step 0 (default: it fails, its note saying why).
    """
    reporter = guarded(reporter)
    fits = plan(job)
    store = Store(out, job.name)
    store.prepare()  # a folder that cannot be written fails here; crashed writes are cleared
    store.adopt_legacy(fits)  # fits stored under the ids of before count as stored
    pending = pending_fits(fits, store.statuses(), retry_failed)
    outcome = SurveyOutcome(total=len(fits), skipped=len(fits) - len(pending))
    if not pending:
        reporter.planned(len(fits), 0)
        return outcome
    import ray  # noqa: F401 - imported here, before the tracker's thread imports MLflow's

    # The MLflow store is opened (a new SQLite store creates its tables: seconds) while Ray
    # starts; the survey run is started in it once Ray is up.
    with ThreadPoolExecutor(1, thread_name_prefix="mlflow-open") as pool:
        connecting = None if tracking_uri is None else pool.submit(Tracker, tracking_uri,
                                                                   job.name)
        started_ray = cluster.init_ray(address)
        try:
            _check_gpus(job, local=started_ray and address is None, reporter=reporter)
            if address is not None:
                _check_node_memory(pending, reporter)
        except BaseException:
            _shutdown(started_ray)
            raise
        reporter.planned(len(fits), len(pending))
        tracker = _open_tracker(tracking_uri, job, len(fits), len(pending), reporter,
                                connecting)
    outcome.parent_run_id = tracker.parent_run_id if tracker is not None else None
    writer = Background()
    recorder = _Recorder(job, pending, store, tracker, reporter, outcome, writer)
    status = "FAILED"
    try:
        resume = checkpoints.latest_checkpoints(
            store.fs, store.tune_path, store.tune_dir, [f.fit_id for f in pending]
        )
        experiment = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        trials.run_trials(pending, job.resources, store.tune_dir, experiment, recorder, resume,
                          restart_unresumable)
        _write_ended(writer, recorder)  # every fit that ended, before they are counted
        outcome.missing = len(pending) - sum(outcome.counts.values())
        ok = [fit_id for fit_id, s in store.statuses().items() if s == "ok"]
        checkpoints.prune_checkpoints(store.fs, store.tune_path, ok)
        status = "KILLED" if outcome.interrupted else "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        _flush(writer, recorder)
        if recorder.tracker is not None:
            try:
                recorder.tracker.end_survey(status, outcome.counts)
            except Exception as exc:  # noqa: BLE001
                reporter.warn(masked(f"MLflow: could not close the survey run ({exc})"))
        _shutdown(started_ray)
    update_summary(store, [f.fit_id for f in fits], warn=reporter.warn,  # summary.parquet
                   **job.analysis.options())
    return outcome


def _write_ended(writer: Background, recorder: _Recorder) -> None:
    """Wait until the fits whose end was heard are recorded. When Tune was interrupted (a
    first Ctrl-C), say how many are being written; a Ctrl-C while waiting leaves them (the
    record under way finishes its MLflow run but writes no row), says how many fits were not
    written, and is raised."""
    waiting = len(recorder.unwritten)
    try:  # from the message on: a Ctrl-C right after it must leave the writes, not wait
        if not writer.closed and waiting and recorder.heard < len(recorder.fits):
            fits, _, them = _fits(waiting)
            recorder.reporter.warn(f"interrupted: writing the {fits} that ended (Ctrl-C "
                                   f"again leaves {them} to a rerun)")
        writer.close()
    except KeyboardInterrupt:
        writer.abandon()
        fits, were, them = _fits(len(recorder.unwritten))
        recorder.reporter.warn(f"{fits} {were} not written; a rerun will run {them}")
        raise


def _fits(count: int) -> tuple[str, str, str]:
    """``count`` fits, and the verb and pronoun that go with it."""
    return (f"{count} fit", "was", "it") if count == 1 else (f"{count} fits", "were", "them")


def _flush(writer: Background, recorder: _Recorder | None = None) -> None:
    """Record the fits that ended before an error or interrupt stopped the survey
    (``_write_ended``, with the ``recorder``); the error that stopped it is the one raised,
    not the writer's nor a Ctrl-C's while waiting."""
    try:
        if recorder is None:
            writer.close()
        else:
            _write_ended(writer, recorder)
    except BaseException:  # noqa: BLE001 - the survey is stopping with its own error
        pass


def _shutdown(started_ray: bool) -> None:
    if started_ray:
        import ray

        ray.shutdown()


def _check_gpus(job: Job, local: bool, reporter: Reporter) -> None:
    """A job asking for GPUs that the cluster lacks would wait for ever: say so."""
    import ray

    if job.resources.gpu <= 0 or ray.cluster_resources().get("GPU", 0) > 0:
        return
    if local:
        raise JobError(
            f"resources.gpu: {job.resources.gpu:g} asked for, but this machine has no GPU; "
            "use --set resources.gpu=0"
        )
    reporter.warn("the cluster has no GPU now: the fits wait until one joins")


def _check_node_memory(fits: Sequence[Fit], reporter: Reporter) -> None:
    """On a joined cluster, warn about fits too large for every node there now (``survey run``
    checked them against this machine's memory only when it runs them itself). A warning,
    not a refusal: an autoscaling cluster may start larger nodes."""
    memory = cluster.largest_node_memory()
    if memory is None:
        return
    for fit in fits:
        try:
            check_footprint(fit.spec, memory, machine="the cluster's largest node now")
        except JobError as exc:
            reporter.warn(f"{fit.fit_id}: {exc}; it fails unless a larger node joins")


# -- reading a survey back -------------------------------------------------------------------


def status_counts(store: Store, fits: Sequence[Fit] | None = None) -> dict[str, int]:
    """Fits by status; with the planned ``fits``, only those, plus ``pending`` ones."""
    statuses = store.statuses()
    if fits is None:
        return dict(Counter(statuses.values()))
    counts = Counter(statuses.get(fit.fit_id, "pending") for fit in fits)
    return dict(counts)
