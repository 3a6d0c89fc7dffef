"""What a fit's MLflow run holds besides its curve: the config as flat params, the settling
figures as metrics, and the spectrum as a PNG."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

from mflow.fit import FitResult
from pipelines.job import Fit

__all__ = ["flatten", "settle_metrics", "spectrum_png"]


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
    """The report's spectrum figure (``pipelines.report.plots.spectrum_figure``) of this one
    fit: its final spectrum of ``A A^T`` on a log scale, the noise floor the readout uses, the
    threshold (``threshold`` rule) and the cut after the estimated dimension."""
    from mflow.readout import readout_floor
    from pipelines.report import plots

    spec, estimate = fit.spec, result.id_estimate
    row = {"group": fit.fit_id, "estimate": estimate, "estimate_min": estimate,
           "estimate_max": estimate, "true_dim": result.true_dim, "settled": result.settled,
           "floor": readout_floor(spec), "sigma2": spec.prior.sigma2,
           "rule": spec.readout.rule, "threshold": spec.readout.threshold}
    return plots.png(plots.spectrum_figure(row, [result.eigenvalues], [spec.train.seed]))


def settle_metrics(result: FitResult) -> dict[str, float | None]:
    """The settling verdict (``settled`` as 1/0) and its figures as metric values; ``None``
    (not logged) where the result has none or a figure is NaN. An infinite figure (a drift
    when too few points were logged to judge) is logged as the largest finite float: that is
    what MLflow's SQL stores write for infinity anyway, and over REST infinity is not JSON.

    Example:
        >>> from mflow.fit import FitResult
        >>> r = FitResult("ok", None, 9, 1, "threshold", (1.0,), (), 5, 1, None, 0.1, "cpu",
        ...               settled=False, settle_drift=math.inf, settle_margin=0.0)
        >>> settle_metrics(r) == {"settled": 0.0, "settle_stable_steps": None,
        ...                        "settle_drift": sys.float_info.max, "settle_margin": 0.0}
        True
    """
    figures = {"settled": result.settled, "settle_stable_steps": result.settle_stable_steps,
               "settle_drift": result.settle_drift, "settle_margin": result.settle_margin}
    return {k: None if v is None or math.isnan(v) else min(float(v), sys.float_info.max)
            for k, v in figures.items()}
