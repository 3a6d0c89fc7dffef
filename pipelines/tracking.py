"""The MLflow adapter (driver only): one experiment per survey, a parent run per survey run,
and one child run per finished fit.

A child run carries the fit's flattened config as params, tags to filter by (survey, fit_id,
dataset, subset, class, noise_floor, seed, status and the grid axes), the curve as metrics over
steps (``loss``, ``estimate``, ``noise_std``, ``lr``, ``eig_0`` .. ``eig_9``), the final
``id_estimate``, and ``spectrum.png``, ``config.json`` and ``eigenvalues.json`` as artifacts
(``error.txt`` for a failed fit). Runs are closed in ``finally``; a failed fit is recorded too.

The tracking URI is any MLflow takes: ``sqlite:///mlflow.db`` (the default, in the working
directory; artifacts go to ``mlruns/`` beside the database) or an MLflow server's URL.
"""

from __future__ import annotations

import io
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mflow.fit import FitResult
from pipelines.spec import Fit, Job
from pipelines.store import group_label

__all__ = ["DEFAULT_TRACKING_URI", "Tracker", "describe", "flatten", "spectrum_png"]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TOP_EIGENVALUES = 10  # eigenvalues logged as metrics over steps

for _name in ("mlflow.store.db.utils", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'train': {'lr': 1}} -> {'train.lr': 1}``.

    Example:
        >>> flatten({"a": {"b": 1, "c": {"d": None}}})
        {'a.b': 1, 'a.c.d': None}
    """
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def spectrum_png(fit: Fit, result: FitResult) -> bytes:
    """A log-scale plot of the final spectrum of ``A A^T``: the noise floor the readout uses,
    the threshold (for the ``threshold`` rule) and the cut after the estimated dimension."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from mflow.readout import noise_floor_variance

    spec = fit.spec
    floor = noise_floor_variance(spec.prior.sigma2, spec.train.noise_floor)
    values = [max(v, 1e-300) if math.isfinite(v) else float("nan") for v in result.eigenvalues]
    fig = Figure(figsize=(5, 3.2), dpi=100)
    ax = fig.add_subplot()
    ax.semilogy(range(1, len(values) + 1), values, "o-", ms=3, lw=1, label="eigenvalues")
    ax.axhline(floor, color="grey", ls=":", lw=1, label="noise floor")
    if spec.readout.rule == "threshold":
        ax.axhline(spec.readout.threshold * floor, color="red", ls="--", lw=1, label="threshold")
    if result.id_estimate is not None:
        ax.axvline(result.id_estimate + 0.5, color="green", lw=1, label="estimate")
    title = f"{fit.fit_id}: estimate {result.id_estimate}"
    if result.true_dim is not None:
        title += f" (true {result.true_dim})"
    ax.set_title(title, fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("index")
    ax.set_ylabel("eigenvalue of A A^T")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


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


class Tracker:
    """MLflow runs of survey ``survey`` at ``uri``; every method may raise MLflow's errors."""

    def __init__(self, uri: str, survey: str) -> None:
        from mlflow import MlflowClient
        from mlflow.utils import validation

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
        """Open the parent run of this survey run; returns its id."""
        import yaml

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
    ) -> str:
        """Record one ended fit as a child run of the survey run; returns the run id."""
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
        wall_ms = int(1000 * (result.wall_s if result is not None else 0.0))
        now = int(time.time() * 1000)
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
                    metrics += [Metric(k, float(v), now, p.step) for k, v in values.items()]
                finals = {"id_estimate": result.id_estimate, "true_dim": result.true_dim,
                          "wall_s": result.wall_s, "diverged_step": result.diverged_step}
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
            self.client.set_terminated(run_id, outcome)
        return run_id

    def _log_png(self, run_id: str, data: bytes, name: str) -> None:
        with tempfile.TemporaryDirectory(prefix="mflow-png-") as folder:
            path = os.path.join(folder, name)
            with open(path, "wb") as f:
                f.write(data)
            self.client.log_artifact(run_id, path)

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
    return uri
