"""Readouts redone from the stored spectra: every fit's estimate read again with another rule
or threshold (``recompute``, ``recompute_curves``; no refit), and the coercions of the stored
values they and the summary share."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from mflow.config import FitSpec
from mflow.local import headline_dimension
from mflow.readout import RULES, estimate_dimension, log_gap_at, readout_floor
from pipelines.analysis.scales import SCALE_RULE

__all__ = ["AnalysisError", "as_float", "as_int", "as_verdict", "check_rule", "recompute",
           "recompute_curves"]


class AnalysisError(ValueError):
    """An analysis that cannot be done as asked (unknown rule or axis); the message says why."""


def as_verdict(value: Any) -> bool | None:
    """A stored settling verdict: True, False, or None (null, not judged)."""
    """A stored ``settled`` as True, False or None (null, NaN or pandas' NA)."""
    return None if value is None or pd.isna(value) else bool(value)


def as_int(value: Any) -> int | None:
    """A stored integer (an estimate, a rank), None where it is null."""
    return None if value is None or pd.isna(value) else int(value)


def as_float(value: Any) -> float | None:
    """A stored number, None where it is null or NaN."""
    """A stored number as a float, or None (null, NaN or pandas' NA)."""
    return None if value is None or pd.isna(value) else float(value)


def _readout(config: str, eigenvalues: Any, rule: str | None, threshold: float | None,
             stored: Any, local: Any = None
             ) -> tuple[int | None, str, float | None, float, float, float | None, int | None]:
    """``(estimate, rule, threshold, floor, sigma2, gap, rank)`` of one fit's stored spectrum;
    with a stored ``local`` dimension the estimate is ``headline_dimension(rank, local)``."""
    spec = FitSpec.from_dict(json.loads(config))
    floor = readout_floor(spec)
    use = rule or spec.readout.rule
    factor = None
    if use == "threshold":
        factor = threshold if threshold is not None else spec.readout.threshold
    values = None if eigenvalues is None else np.asarray(eigenvalues, dtype=np.float64)
    if values is None or values.size == 0 or not np.all(np.isfinite(values)):
        return None, use, factor, floor, spec.prior.sigma2, None, None
    rank = as_int(stored[1] if isinstance(stored, tuple) else None)
    if rule is None:
        estimate = as_int(stored[0] if isinstance(stored, tuple) else stored)
    else:
        params = {"threshold": factor} if use == "threshold" else {}
        rank = estimate_dimension(values, floor, use, **params)
        estimate = rank if as_float(local) is None else headline_dimension(rank, local)
    gap = None
    cut = rank if rank is not None else estimate
    if cut is not None and 0 <= cut <= values.size:
        gap = log_gap_at(values, floor, cut)
    return estimate, use, factor, floor, spec.prior.sigma2, gap, rank


def check_rule(rule: str | None, threshold: float | None) -> None:
    """Refuse an unknown readout rule, or a threshold given to another rule than ``threshold``."""
    if rule is not None and rule not in RULES and rule != SCALE_RULE:
        known = ", ".join([*RULES, SCALE_RULE])
        raise AnalysisError(f"--rule: unknown readout rule {rule!r}; known: {known}")
    if threshold is not None:
        if rule != "threshold":
            raise AnalysisError("--threshold: only with --rule threshold")
        if not (math.isfinite(threshold) and threshold > 0):
            raise AnalysisError(f"--threshold: must be > 0, got {threshold:g}")


def recompute(
    fits: pd.DataFrame, rule: str | None = None, threshold: float | None = None
) -> pd.DataFrame:
    """A copy of the fits table with each fit's readout (re)done from its stored spectrum.

    With ``rule=None`` the stored estimates are kept; otherwise ``id_estimate`` and ``id_rule``
    are replaced by what ``rule`` reads (``threshold`` defaults to each fit's configured
    factor), and a fit whose estimate changes loses its settling verdict (``settled`` null:
    it was judged at the estimate its own readout read). ``id_rank`` is the rank the rule
    reads, and where the fit has a ``local_dim`` the estimate is
    ``mflow.local.headline_dimension`` of the two (``local_dim`` itself stays as the fit
    computed it, in its own rank's directions). Fits that did not end ok keep a null
    estimate. Adds the columns ``threshold``, ``floor``, ``sigma2`` and ``gap`` (the log-gap
    at the rank's cut), and ``settled``, ``id_rank`` and ``local_dim`` (null) to a table
    without them.

    Example:
        >>> config = FitSpec().to_json()  # floor = 1e-6 + 0.01**2
        >>> table = pd.DataFrame({"config": [config], "status": ["ok"], "id_estimate": [2],
        ...                       "id_rule": ["threshold"], "eigenvalues": [[1.0, 0.1, 1e-4]]})
        >>> int(recompute(table, "threshold", threshold=5000).loc[0, "id_estimate"])
        1
    """
    check_rule(rule, threshold)
    rule = None if rule == SCALE_RULE else rule  # read across floors, not fit by fit
    nulls = pd.Series([None] * len(fits), index=fits.index, dtype=object)
    ranks = fits["id_rank"] if "id_rank" in fits else nulls
    locals_ = fits["local_dim"] if "local_dim" in fits else nulls
    rows = [
        _readout(config, eig if status == "ok" else None, rule, threshold, (stored, rank), local)
        for config, eig, status, stored, rank, local in zip(
            fits["config"], fits["eigenvalues"], fits["status"], fits["id_estimate"], ranks,
            locals_, strict=True,
        )
    ]
    out = fits.copy()
    estimates = [r[0] for r in rows]
    verdicts = [as_verdict(v) for v in fits["settled"]] if "settled" in fits else [None] * len(rows)
    if rule is not None:
        verdicts = [v if new == as_int(old) else None
                    for v, new, old in zip(verdicts, estimates, fits["id_estimate"], strict=True)]
    out["settled"] = pd.array(verdicts, dtype="boolean")
    out["id_estimate"] = pd.array(estimates, dtype="Int64")
    out["id_rule"] = [r[1] for r in rows]
    out["threshold"] = [np.nan if r[2] is None else float(r[2]) for r in rows]
    out["floor"] = [r[3] for r in rows]
    out["sigma2"] = [r[4] for r in rows]
    out["gap"] = [np.nan if r[5] is None else r[5] for r in rows]
    out["id_rank"] = pd.array([r[6] for r in rows], dtype="Int64")
    out["local_dim"] = [np.nan if as_float(v) is None else float(v) for v in locals_]
    if "local_dim_spread" not in out:
        out["local_dim_spread"] = np.nan
    return out


def recompute_curves(
    curves: pd.DataFrame, fits: pd.DataFrame, rule: str | None = None,
    threshold: float | None = None,
) -> pd.DataFrame:
    """The curves with each logged step's ``estimate`` read again with ``rule`` (as
    ``recompute`` does for the final spectra); ``rule=None`` returns them unchanged."""
    check_rule(rule, threshold)
    if rule is None or rule == SCALE_RULE or curves.empty:
        return curves
    configs = dict(zip(fits["fit_id"], fits["config"], strict=True))
    estimates = []
    for fit_id, values in zip(curves["fit_id"], curves["eigenvalues"], strict=True):
        config = configs.get(fit_id)
        estimate = None
        if config is not None and values is not None:
            estimate = _readout(config, values, rule, threshold, None)[0]
        estimates.append(estimate)
    return curves.assign(estimate=pd.array(estimates, dtype="Int64"))
