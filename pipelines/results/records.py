"""The rows of a survey's Parquet tables: the fits table (one row per fit) and the curves
table (one row per fit and logged step), their schemas, and the group a fit belongs to."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from mflow.fit import FitResult
from pipelines.job import SHORT_AXES, Fit

__all__ = ["CURVES_SCHEMA", "FITS_SCHEMA", "curve_rows", "fit_record", "group_label"]

_LIST = pa.list_(pa.float64())

FITS_SCHEMA = pa.schema(
    [
        ("survey", pa.string()),
        ("fit_id", pa.string()),
        ("dataset", pa.string()),
        ("subset", pa.int64()),  # subset size asked for: data.n (per class for class data)
        ("class", pa.int64()),  # the one class kept, else null (see classes)
        ("classes", pa.list_(pa.int64())),  # data.classes; null keeps all
        ("noise_floor", pa.float64()),
        ("seed", pa.int64()),  # train.seed
        ("n", pa.int64()),  # training points the fit saw
        ("ambient_dim", pa.int64()),
        ("true_dim", pa.int64()),
        ("status", pa.string()),  # ok, diverged or failed
        ("error", pa.string()),
        ("id_estimate", pa.int64()),
        ("id_rule", pa.string()),
        ("eigenvalues", _LIST),  # final spectrum of A A^T, descending
        ("steps", pa.int64()),
        ("wall_s", pa.float64()),
        ("device", pa.string()),
        ("diverged_step", pa.int64()),
        ("stop_reason", pa.string()),  # early_stop when it settled before train.steps, else null
        # Whether the estimate settled (mflow.settle) and the figures it was decided on: the
        # steps it has held at the noise floor, the drift of the eigenvalues either side of
        # the cut (a factor; inf: too few logged points) and their smallest margin from it.
        # Null for a fit without a result or recorded before the criterion (absent from
        # older files: readers here fill them with nulls)
        ("settled", pa.bool_()),
        ("settle_stable_steps", pa.int64()),
        ("settle_drift", pa.float64()),
        ("settle_margin", pa.float64()),
        # how far the held-out loss fell between the window's halves (mflow.settle, rule 5);
        # null where the data hold no points out
        ("settle_heldout_fall", pa.float64()),
        # Issue 16: the rank of A A^T (flat dimensions needed; id_estimate is read from it and
        # local_dim, mflow.local.headline_dimension), the local dimension of the codes in those
        # directions, its spread over points and its rule (null before; absent from older files)
        ("id_rank", pa.int64()),
        ("local_dim", pa.float64()),
        ("local_dim_spread", pa.float64()),
        ("local_rule", pa.string()),
        # The Jacobian readout (mflow.jacobian): median over points of the count of the
        # model's local variances above the cut, its interquartile range, and where it read
        # (heldout or train); the ablation (the same local rule on the raw points, no flow);
        # whether the spectrum collapsed (then no id_estimate); the readout (name/version)
        # and code version behind id_estimate. Null before they existed.
        ("jacobian_dim", pa.float64()),
        ("jacobian_spread", pa.float64()),
        ("jacobian_points", pa.string()),
        ("flowless_dim", pa.float64()),
        ("collapsed", pa.bool_()),
        ("readout", pa.string()),
        ("code_version", pa.string()),
        ("retries", pa.int64()),  # trial restarts after failures
        # What else the run should know: e.g. an earlier run's checkpoint could not be
        # restored as it was taken (pipelines.execution.checkpoints.resume), so the fit was
        # not trained, or trained from step 0 (null when nothing; absent from older files)
        ("note", pa.string()),
        ("axes", pa.string()),  # JSON: grid axis -> this fit's value (label)
        ("group", pa.string()),  # the non-seed axes, "axis=value ...": fits that differ by seed
        ("mlflow_run_id", pa.string()),
        ("config", pa.string()),  # JSON of the resolved FitSpec
        # When the driver heard the fit's trial first start in the run that recorded it
        # (null in older files) and when it heard the fit end
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
    ]
)

CURVES_SCHEMA = pa.schema(
    [
        ("survey", pa.string()),
        ("fit_id", pa.string()),
        ("step", pa.int64()),
        ("loss", pa.float64()),
        ("noise_std", pa.float64()),
        ("lr", pa.float64()),
        ("estimate", pa.int64()),
        ("eigenvalues", _LIST),
        # the codes' local dimension at this step (null before the noise floor; mflow.fit)
        ("local_dim", pa.float64()),
        # the loss of the fit's fixed held-out batch (null before the noise floor, or where
        # the data hold no points out; mflow.artifacts.heldout_loss)
        ("heldout_loss", pa.float64()),
    ]
)


def _is_seed_axis(name: str) -> bool:
    return name == "seed" or name in ("train.seed", "data.seed") or (
        name in SHORT_AXES and set(SHORT_AXES[name]) <= {"train.seed", "data.seed"}
    )


def group_label(axes: Mapping[str, Any]) -> str:
    """The grid position of a fit without its seed: fits that differ only by seed share it.

    Example:
        >>> group_label({"dataset": "sine", "seed": 2, "variant": "baseline"})
        'dataset=sine variant=baseline'
    """
    return " ".join(f"{k}={v}" for k, v in axes.items() if not _is_seed_axis(k))


def fit_record(
    survey: str,
    fit: Fit,
    result: FitResult | None,
    *,
    error: str | None = None,
    mlflow_run_id: str | None = None,
    retries: int = 0,
    finished_at: datetime | None = None,
    note: str | None = None,
    started_at: datetime | None = None,
) -> dict[str, Any]:
    """The fits-table row of ``fit``: from its result, or a failed row when there is none."""
    spec = fit.spec
    classes = list(spec.data.classes) if spec.data.classes is not None else None
    row: dict[str, Any] = {
        "survey": survey,
        "fit_id": fit.fit_id,
        "dataset": spec.data.dataset,
        "subset": spec.data.n,
        "class": classes[0] if classes is not None and len(classes) == 1 else None,
        "classes": classes,
        "noise_floor": spec.train.noise_floor,
        "seed": spec.train.seed,
        "n": None,
        "ambient_dim": None,
        "true_dim": None,
        "status": "failed",
        "error": error,
        "id_estimate": None,
        "id_rule": spec.readout.rule,
        "eigenvalues": None,
        "steps": None,
        "wall_s": None,
        "device": None,
        "diverged_step": None,
        "stop_reason": None,
        "settled": None,
        "settle_stable_steps": None,
        "settle_drift": None,
        "settle_margin": None,
        "settle_heldout_fall": None,
        "id_rank": None,
        "local_dim": None,
        "local_dim_spread": None,
        "local_rule": None,
        "jacobian_dim": None,
        "jacobian_spread": None,
        "jacobian_points": None,
        "flowless_dim": None,
        "collapsed": None,
        "readout": None,
        "code_version": None,
        "retries": retries,
        "note": note,
        "axes": json.dumps(fit.axes, sort_keys=False),
        "group": group_label(fit.axes),
        "mlflow_run_id": mlflow_run_id,
        "config": spec.to_json(),
        "started_at": started_at,
        "finished_at": finished_at or datetime.now(UTC),
    }
    if result is not None:
        row.update(
            n=result.n,
            ambient_dim=result.ambient_dim,
            true_dim=result.true_dim,
            status=result.status,
            error=result.error if error is None else error,
            id_estimate=result.id_estimate,
            id_rule=result.id_rule,
            eigenvalues=[float(v) for v in result.eigenvalues],
            steps=result.steps,
            wall_s=result.wall_s,
            device=result.device,
            diverged_step=result.diverged_step,
            stop_reason=result.stop_reason,
            settled=result.settled,
            settle_stable_steps=result.settle_stable_steps,
            settle_drift=result.settle_drift,
            settle_margin=result.settle_margin,
            settle_heldout_fall=result.settle_heldout_fall,
            id_rank=result.id_rank,
            local_dim=result.local_dim,
            local_dim_spread=result.local_dim_spread,
            local_rule=result.local_rule,
            jacobian_dim=result.jacobian_dim,
            jacobian_spread=result.jacobian_spread,
            jacobian_points=result.jacobian_points,
            flowless_dim=result.flowless_dim,
            collapsed=result.collapsed,
            readout=result.readout,
            code_version=result.code_version,
        )
    return row


def curve_rows(survey: str, fit_id: str, result: FitResult | None) -> list[dict[str, Any]]:
    """The curves-table rows of a fit: one per logged step (none for a failed fit)."""
    if result is None:
        return []
    return [
        {
            "survey": survey,
            "fit_id": fit_id,
            "step": p.step,
            "loss": p.loss,
            "noise_std": p.noise_std,
            "lr": p.lr,
            "estimate": p.estimate,
            "eigenvalues": [float(v) for v in p.eigenvalues],
            "local_dim": p.local_dim,
            "heldout_loss": p.heldout_loss,
        }
        for p in result.curve
    ]
