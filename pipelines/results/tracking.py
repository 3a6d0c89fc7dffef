"""The MLflow adapter (driver only): one experiment per survey, a parent run per survey run,
and one child run per finished fit.

A child run carries the fit's flattened config as params, tags to filter by (survey, fit_id,
dataset, subset, class, noise_floor, seed, status and the grid axes), the curve as metrics over
steps (``loss``, ``estimate``, ``noise_std``, ``lr``, ``eig_0`` .. ``eig_9``), the final
``id_estimate``, whether it settled (``settled``: 1 or 0; ``mflow.settle``) with the figures
that decided it (``settle_stable_steps``, ``settle_drift``, ``settle_margin``), the two
numbers the estimate is read from (``id_rank``, the rank of ``A A^T``; ``local_dim`` and
``local_dim_spread``, the codes' local dimension, ``mflow.local``), and
``spectrum.png``, ``config.json`` and ``eigenvalues.json`` as artifacts (``error.txt`` for a
failed fit). Runs are closed in ``finally``; a failed fit is recorded too.

The tracking URI is any MLflow takes: ``sqlite:///mlflow.db`` (the default, in the working
directory; artifacts go to ``mlruns/`` beside the database) or an MLflow server's URL.

Parquet is the record; MLflow mirrors it. An MLflow server that is down when a survey starts
is noticed at once (a TCP check), and the driver lowers MLflow's HTTP retries (default 7,
with exponential backoff: minutes) to 2 and its timeout to 30 s unless
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_TIMEOUT`` are set, so a server
that stops mid-survey costs seconds. Fits recorded while MLflow was unreachable are added
later from Parquet (``pipelines.results.backfill``, ``survey sync-mlflow``). A fit has one
active run: when it is recorded again (retried, backfilled, or recorded in MLflow just before
a crash kept it out of Parquet), its earlier runs are moved to MLflow's deleted runs
(restorable), and a survey run left ``RUNNING`` by a killed driver is marked ``KILLED`` by the
next one.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mflow.fit import FitResult
from pipelines.job import Fit, Job, masked
from pipelines.results.fit_run import flatten, settle_metrics, spectrum_png
from pipelines.results.records import group_label

__all__ = [
    "DEFAULT_TRACKING_URI",
    "Tracker",
    "describe",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TOP_EIGENVALUES = 10  # eigenvalues logged as metrics over steps
# MLflow's HTTP client settings unless the user set them: fail in seconds, not minutes.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
CONNECT_TIMEOUT_S = 5.0  # the TCP check of an MLflow server before a survey starts

for _name in ("mlflow.store.db.utils", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _artifact_location(uri: str, experiment: str) -> str | None:
    """For a SQLite store, keep artifacts beside the database (``mlruns/<experiment>``)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    db = Path(uri[len(prefix) :])
    if str(db) in ("", ":memory:"):
        return None
    return (db.resolve().parent / "mlruns" / experiment).as_uri()


def _check_server(uri: str) -> None:
    """Fail fast when nobody listens at an ``http(s)://`` tracking URI (MLflow would retry)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConnectionError(masked(f"no MLflow server answers at {uri} ({exc})")) from None


class Tracker:
    """MLflow runs of survey ``survey`` at ``uri``; every method may raise MLflow's errors."""

    def __init__(self, uri: str, survey: str) -> None:
        from mlflow import MlflowClient
        from mlflow.utils import validation

        if urlsplit(uri).scheme in ("http", "https"):
            for key, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
            _check_server(uri)
        self.uri = uri
        self.survey = survey
        self.client = MlflowClient(tracking_uri=uri)
        self._limits = validation
        self.parent_run_id: str | None = None
        experiment = self.client.get_experiment_by_name(survey)
        if experiment is None:
            self.experiment_id = self.client.create_experiment(
                survey, artifact_location=_artifact_location(uri, survey), tags={"survey": survey}
            )
        else:
            self.experiment_id = experiment.experiment_id
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(self.experiment_id)

    # -- batches within MLflow's limits -----------------------------------------------------

    def _log(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        from mlflow.entities import Param, RunTag

        limits = self._limits
        params = [
            Param(str(k)[: limits.MAX_ENTITY_KEY_LENGTH], str(v)[: limits.MAX_PARAM_VAL_LENGTH])
            for k, v in params
        ]
        tags = [
            RunTag(str(k)[: limits.MAX_ENTITY_KEY_LENGTH], str(v)[: limits.MAX_TAG_VAL_LENGTH])
            for k, v in tags
        ]
        for chunk in _chunks(params, limits.MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=list(chunk))
        for chunk in _chunks(tags, limits.MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=list(chunk))
        for chunk in _chunks(list(metrics), limits.MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=list(chunk))

    # -- the survey run ---------------------------------------------------------------------

    def start_survey(self, job: Job, total: int, pending: int) -> str:
        """Open the parent run of this survey run; returns its id. Survey runs still
        ``RUNNING`` (their driver was killed) are marked ``KILLED`` first."""
        import yaml

        stale = self.client.search_runs(
            [self.experiment_id], "tags.kind = 'survey-run' and attributes.status = 'RUNNING'"
        )
        for old in stale:
            self.client.set_terminated(old.info.run_id, "KILLED")
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{self.survey} {time.strftime('%Y-%m-%d %H:%M:%S')}",
            tags={"survey": self.survey, "kind": "survey-run"},
        )
        self.parent_run_id = run.info.run_id
        params = {"fits": total, "pending": pending, "job": job.source or ""}
        params.update({f"resources.{k}": v for k, v in job.resources.model_dump().items()})
        params.update({f"grid.{a.name}": len(a.labels) for a in job.axes})
        self._log(self.parent_run_id, params=params.items())
        self.client.log_text(
            self.parent_run_id, yaml.safe_dump(job.raw, sort_keys=False), "job.yaml"
        )
        return self.parent_run_id

    def start_sync(self, missing: int) -> str:
        """Open the parent run of a backfill from Parquet (``survey sync-mlflow``)."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{self.survey} sync {time.strftime('%Y-%m-%d %H:%M:%S')}",
            tags={"survey": self.survey, "kind": "survey-sync"},
        )
        self.parent_run_id = run.info.run_id
        self._log(self.parent_run_id, params=[("missing", missing)])
        return self.parent_run_id

    def end_survey(self, status: str, counts: Mapping[str, int]) -> None:
        """Close the parent run (``FINISHED``, ``FAILED`` or ``KILLED``) with its counts."""
        if self.parent_run_id is None:
            return
        from mlflow.entities import Metric

        try:
            now = int(time.time() * 1000)
            metrics = [Metric(f"fits_{k}", float(v), now, 0) for k, v in counts.items()]
            self._log(self.parent_run_id, metrics=metrics)
        finally:
            self.client.set_terminated(self.parent_run_id, status)
            self.parent_run_id = None

    # -- one fit ----------------------------------------------------------------------------

    def log_fit(
        self,
        fit: Fit,
        result: FitResult | None,
        *,
        error: str | None = None,
        detail: str = "",
        retries: int = 0,
        ended_at: datetime | None = None,
    ) -> str:
        """Record one ended fit as a child run of the survey run; returns the run id.

        Earlier runs of the same fit are deleted (soft) once this one is complete, so the
        fit has one active run. ``ended_at``: when the fit ended (default: now).
        """
        from mlflow.entities import Metric

        spec = fit.spec
        status = result.status if result is not None else "failed"
        classes = spec.data.classes
        tags = {
            "survey": self.survey,
            "fit_id": fit.fit_id,
            "dataset": spec.data.dataset,
            "subset": spec.data.n,
            "class": classes[0] if classes is not None and len(classes) == 1 else "",
            "noise_floor": spec.train.noise_floor,
            "seed": spec.train.seed,
            "status": status,
            "group": group_label(fit.axes),
            "retries": retries,
            **{f"axis.{k}": v for k, v in fit.axes.items()},
        }
        if self.parent_run_id is not None:
            tags["mlflow.parentRunId"] = self.parent_run_id
        if result is not None and result.readout is not None:
            tags["readout"], tags["code_version"] = result.readout, result.code_version
        wall_ms = int(1000 * (result.wall_s if result is not None else 0.0))
        now = int(1000 * (ended_at.timestamp() if ended_at is not None else time.time()))
        earlier = self.client.search_runs(
            [self.experiment_id], f"tags.fit_id = '{fit.fit_id}'", max_results=1000
        )
        run = self.client.create_run(
            self.experiment_id, start_time=now - wall_ms, run_name=fit.fit_id
        )
        run_id = run.info.run_id
        outcome = "FAILED"
        try:
            metrics = []
            if result is not None:
                for p in result.curve:
                    values = {"loss": p.loss, "estimate": p.estimate, "noise_std": p.noise_std,
                              "lr": p.lr}
                    values.update(
                        {f"eig_{i}": v for i, v in enumerate(p.eigenvalues[:TOP_EIGENVALUES])}
                    )
                    if p.local_dim is not None:  # the series; "local_dim" is the final value
                        values["local"] = p.local_dim
                    if p.heldout_loss is not None:
                        values["heldout_loss"] = p.heldout_loss
                    metrics += [Metric(k, float(v), now, p.step) for k, v in values.items()]
                finals = {"id_estimate": result.id_estimate, "true_dim": result.true_dim,
                          "wall_s": result.wall_s, "diverged_step": result.diverged_step,
                          "id_rank": result.id_rank, "local_dim": result.local_dim,
                          "local_dim_spread": result.local_dim_spread,
                          "jacobian_dim": result.jacobian_dim,
                          "jacobian_spread": result.jacobian_spread,
                          "flowless_dim": result.flowless_dim,
                          **settle_metrics(result)}
                metrics += [
                    Metric(k, float(v), now, result.steps)
                    for k, v in finals.items() if v is not None
                ]
            if error is not None:
                tags["error"] = error
            self._log(
                run_id,
                metrics=metrics,
                params=flatten(spec.to_dict()).items(),
                tags=tags.items(),
            )
            self.client.log_dict(run_id, spec.to_dict(), "config.json")
            if result is not None:
                self.client.log_dict(run_id, list(result.eigenvalues), "eigenvalues.json")
                self._log_png(run_id, spectrum_png(fit, result), "spectrum.png")
            if detail:
                self.client.log_text(run_id, detail, "error.txt")
            outcome = "FINISHED" if status == "ok" else "FAILED"
        finally:
            self.client.set_terminated(
                run_id, outcome, end_time=now if ended_at is not None else None
            )
        try:
            for old in earlier:
                if old.info.run_id != run_id:
                    self.client.delete_run(old.info.run_id)
        except Exception:  # noqa: BLE001 - the run is recorded; backfill removes what is left
            pass
        return run_id

    def _log_png(self, run_id: str, data: bytes, name: str) -> None:
        with tempfile.TemporaryDirectory(prefix="mflow-png-") as folder:
            path = os.path.join(folder, name)
            with open(path, "wb") as f:
                f.write(data)
            self.client.log_artifact(run_id, path)

    def active_runs(self) -> dict[str, str | None]:
        """``{run_id: fit_id}`` of every active (not deleted) run of this survey's experiment
        (``None`` for runs that are not a fit's: the survey runs)."""
        runs: dict[str, str | None] = {}
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], "", max_results=1000, page_token=token
            )
            runs.update((run.info.run_id, run.data.tags.get("fit_id")) for run in page)
            token = page.token
            if not token:
                return runs

    def run_exists(self, run_id: str) -> bool:
        """Whether ``run_id`` is a run of this survey's experiment."""
        try:
            return self.client.get_run(run_id).info.experiment_id == self.experiment_id
        except Exception:  # noqa: BLE001 - MLflow raises its own error for an unknown id
            return False


def describe(uri: str) -> str:
    """How to look at the runs: the command for a SQLite store, the URL for a server."""
    if uri.startswith("sqlite:"):
        return f"mlflow ui --backend-store-uri {uri}"
    return masked(uri)


