"""What a fit leaves: the points of its curve (``CurvePoint``), its outcome (``FitResult``),
the dimension a spectrum reads, whether the curve has settled, and ``make_result``, which puts
the outcome together from the final spectrum, the curve and the codes' local dimension."""

from __future__ import annotations

import functools
import importlib.metadata
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from mflow.config import FitSpec
from mflow.datasets import Dataset
from mflow.jacobian import JacobianDimension
from mflow.local import LocalDimension, headline_dimension
from mflow.readout import estimate_dimension, readout_cut, readout_floor
from mflow.settle import Settling, settling

__all__ = ["READOUT", "CurvePoint", "FitResult", "code_version", "early_stop_due",
           "fit_settling", "is_collapsed", "make_result", "read_dimension"]

#: The readout that gives ``FitResult.id_estimate``, name and version: raised whenever the
#: way a stored fit's estimate is read changes (``survey analyze`` re-reads older rows).
READOUT = "rank-local/4"


@functools.cache
def code_version() -> str:
    """The installed project's version (``manifold-flow-survey``), or ``unknown``."""
    try:
        return importlib.metadata.version("manifold-flow-survey")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"

@dataclass(frozen=True)
class CurvePoint:
    """What is recorded every ``log_every`` steps."""

    step: int  # steps done
    loss: float  # mean loss over the steps since the previous point
    noise_std: float  # data noise sigma_x in force at the last of those steps
    lr: float  # learning rate in force at the last of those steps
    estimate: int  # dimension read from the spectrum at this step
    eigenvalues: tuple[float, ...]  # spectrum of A A^T, descending
    # local dimension of the codes in the ``estimate`` leading directions (``local_estimate``),
    # read at the noise floor only (None before it, or where there is nothing to read)
    local_dim: float | None = None
    # the loss of the fit's fixed held-out batch (``heldout_loss``), at the noise floor only
    # (None before it, or where the data hold no points out)
    heldout_loss: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CurvePoint:
        """The point that ``dataclasses.asdict`` (a checkpoint, a result file) or a curves-table
        row made into ``d`` (keys of other columns are ignored). A ``None`` number (how older
        ``mflow.batch`` files wrote NaN) reads as NaN.

        Example:
            >>> p = CurvePoint.from_dict({"step": 10, "loss": None, "noise_std": 0.01,
            ...     "lr": 1e-3, "estimate": 1, "eigenvalues": [1.0, 1e-4], "fit_id": "x"})
            >>> p.loss, p.eigenvalues
            (nan, (1.0, 0.0001))
        """
        return cls(step=int(d["step"]), loss=_number(d["loss"]),
                   noise_std=_number(d["noise_std"]), lr=_number(d["lr"]),
                   estimate=int(d["estimate"]),
                   eigenvalues=tuple(_number(v) for v in d["eigenvalues"]),
                   local_dim=_optional(d.get("local_dim")),
                   heldout_loss=_optional(d.get("heldout_loss")))


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _optional(value: Any) -> float | None:
    """A stored optional number: None for None or NaN (a null in a Parquet column)."""
    return None if value is None or value != value else float(value)


@dataclass(frozen=True)
class FitResult:
    """The outcome of one fit, as plain data."""

    status: str  # ok, diverged (loss became NaN/inf) or failed (an exception)
    error: str | None  # why, when not ok
    steps: int  # optimiser steps done
    id_estimate: int | None  # the estimate: headline_dimension(id_rank, local_dim), see below
    id_rule: str  # the readout rule that read it
    eigenvalues: tuple[float, ...]  # final spectrum of A A^T, descending
    curve: tuple[CurvePoint, ...]  # one point every log_every steps
    n: int  # number of training points
    ambient_dim: int  # dimension of the data space
    true_dim: int | None  # the data's dimension where known by construction
    wall_s: float  # training time, summed over restarts
    device: str  # where it trained
    diverged_step: int | None = None  # first step whose loss was not finite
    stop_reason: str | None = None  # 'early_stop' when it settled before train.steps, else None
    # Whether the estimate settled (mflow.settle) and the figures that decided it; None for
    # results recorded before the criterion existed.
    settled: bool | None = None
    settle_stable_steps: int | None = None  # steps the estimate has held at the noise floor
    settle_drift: float | None = None  # factor the eigenvalues either side of the cut moved
    settle_margin: float | None = None  # smallest factor between them and the cut
    settle_heldout_fall: float | None = None  # the held-out loss's fall over the window
    # The two numbers of issue 16 (None for results recorded before them): id_rank, the rank
    # of A A^T (the flat dimensions the flow needs, K), and the local dimension of the codes
    # g(x) E_K of up to READ_POINTS points (mflow.local, rule local_rule) with its spread over
    # points. id_estimate is mflow.local.headline_dimension of the two.
    id_rank: int | None = None
    local_dim: float | None = None
    local_dim_spread: float | None = None
    local_rule: str | None = None
    # The Jacobian readout (mflow.jacobian): the median over points of the count of the
    # model's local variances above the cut, their interquartile range, and where it read
    # ('heldout': rows the fit did not train on; 'train': the loader held none out).
    jacobian_dim: float | None = None
    jacobian_spread: float | None = None
    jacobian_points: str | None = None
    # The ablation: the codes' local rule applied to the raw training points, no flow at all
    flowless_dim: float | None = None
    # Which readout produced id_estimate (name/version, READOUT) and the code's version
    readout: str | None = None
    code_version: str | None = None
    # The prior gave up directions the model's density still spreads over (``collapsed``):
    # the rank is below half the Jacobian count, and the fit gets no estimate
    collapsed: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any],
                  curve: Sequence[Mapping[str, Any]] | None = None) -> FitResult:
        """The inverse of ``to_dict``, also from a fits-table row (keys of other columns are
        ignored; fields added since ``d`` was written take their defaults). ``curve``: the
        points, when they are not in ``d["curve"]`` (curves-table rows, any order)."""
        points = d["curve"] if curve is None else sorted(curve, key=lambda p: p["step"])
        names = {f.name for f in fields(cls)} - {"eigenvalues", "curve"}
        return cls(**{k: v for k, v in d.items() if k in names},
                   eigenvalues=tuple(_number(v) for v in d["eigenvalues"]),
                   curve=tuple(CurvePoint.from_dict(p) for p in points))


def fit_settling(spec: FitSpec, curve: Sequence[CurvePoint]) -> Settling:
    """Whether the fit of ``spec`` with this curve has settled (``mflow.settle``)."""
    return settling(curve, spec, readout_cut(spec))


def early_stop_due(curve: Sequence[CurvePoint], spec: FitSpec) -> bool:
    """Whether a fit with early stop on (``train.early_stop_window > 0``) may end now: it
    has settled over its last ``early_stop_window + 1`` logged points (``mflow.settle``).

    Example:
        >>> spec = FitSpec().replace(train={"early_stop_window": 2, "noise_floor": 0.01})
        >>> flat = [CurvePoint(s, -3.0, 0.01, 1e-3, 1, (1.0, 1e-4)) for s in (100, 200, 300)]
        >>> early_stop_due(flat, spec), early_stop_due(flat[:2], spec)
        (True, False)
    """
    return spec.train.early_stop_window > 0 and fit_settling(spec, curve).settled


def read_dimension(spec: FitSpec, eigenvalues: tuple[float, ...]) -> int:
    """The dimension that ``spec.readout`` reads from a spectrum (-1 if it is not finite)."""
    if not all(math.isfinite(v) for v in eigenvalues):
        return -1
    readout = spec.readout
    params = {"threshold": readout.threshold} if readout.rule == "threshold" else {}
    return estimate_dimension(eigenvalues, readout_floor(spec), readout.rule, **params)


def make_result(
    spec: FitSpec,
    data: Dataset,
    steps: int,
    eigenvalues: tuple[float, ...],
    curve: list[CurvePoint],
    wall_s: float,
    device: torch.device,
    diverged_step: int | None,
    stop_reason: str | None = None,
    local: LocalDimension | None = None,
    jacobian: tuple[JacobianDimension, str] | None = None,
    flowless: LocalDimension | None = None,
) -> FitResult:
    """Assemble a ``FitResult``; a diverged fit has no estimate and has not settled.

    ``local`` (``local_estimate``): the local dimension of the codes; with it the estimate is
    ``headline_dimension(rank, local)``, without it the rank of ``A A^T``. ``jacobian``
    (``jacobian_estimate``): the model's own count, beside it; where the rank has collapsed
    below half of it (``collapsed``) the fit has no estimate. ``flowless``: the ablation.
    """
    diverged = diverged_step is not None
    judged = fit_settling(spec, curve)
    rank = None if diverged else read_dimension(spec, eigenvalues)
    estimate = rank
    if rank is not None and local is not None:
        estimate = headline_dimension(rank, local.value)
    collapsed = None if rank is None or jacobian is None else is_collapsed(rank, jacobian[0].value)
    if collapsed:
        estimate = None
    return FitResult(
        status="diverged" if diverged else "ok",
        error=f"loss became NaN or inf at step {diverged_step}" if diverged else None,
        steps=steps,
        id_estimate=estimate,
        id_rule=spec.readout.rule,
        eigenvalues=eigenvalues,
        curve=tuple(curve),
        n=data.n,
        ambient_dim=data.ambient_dim,
        true_dim=data.true_dim,
        wall_s=wall_s,
        device=str(device),
        diverged_step=diverged_step,
        stop_reason=stop_reason,
        settled=judged.settled and not diverged,
        settle_stable_steps=judged.stable_steps,
        settle_drift=judged.drift,
        settle_margin=judged.margin,
        settle_heldout_fall=None if math.isnan(judged.heldout_fall) else judged.heldout_fall,
        id_rank=rank,
        local_dim=None if local is None else local.value,
        local_dim_spread=None if local is None else local.spread,
        local_rule=None if local is None else local.rule,
        jacobian_dim=None if jacobian is None else jacobian[0].value,
        jacobian_spread=None if jacobian is None else jacobian[0].spread,
        jacobian_points=None if jacobian is None else jacobian[1],
        flowless_dim=None if flowless is None else flowless.value,
        readout=READOUT,
        code_version=code_version(),
        collapsed=collapsed,
    )


def is_collapsed(rank: int, jacobian: float) -> bool:
    """Whether a spectrum has collapsed: the prior keeps fewer than half the directions that
    the model's density spreads over at held-out points (``mflow.jacobian``). Such a prior no
    longer describes the data (scikit-dimension's 9-D paraboloid: rank 1, Jacobian count 8),
    so neither its rank nor the codes in its kept directions are an estimate.

    Example:
        >>> is_collapsed(1, 8.0), is_collapsed(24, 31.0), is_collapsed(0, 0.0)
        (True, False, False)
    """
    return 2 * rank < jacobian

