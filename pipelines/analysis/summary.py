"""The summary of a survey's stored fits: one row per group (its columns:
``pipelines.analysis.columns``).

A *group* is the set of fits that differ only by seed: by default the fits table's ``group``
column (every grid axis but the seed); ``group_by`` names the axes to group by instead. For
each group the summary holds

- counts: ``fits``, ``ok``, ``diverged``, ``failed``;
- the estimate: ``estimate`` (median over the fits that ended ok), ``estimate_min`` and
  ``estimate_max`` (its spread over seeds), ``estimates`` (each fit's, in seed order; null for
  a fit that did not end ok);
- whether it settled (``mflow.settle``): ``settled_fits``, how many of the ``ok`` fits
  settled; ``settled_per_fit`` (seed order; null for a fit not ok or not judged); ``settled``,
  the group's verdict: true when every ok fit settled, false when one did not (or none ended
  ok), null when the rest were never judged (recorded before the criterion, or read again
  with another rule that moved their estimate); and ``answer``, the estimate only when the
  group settled, else null. An unsettled group's ``estimate`` is where training stopped, not
  an answer: whatever shows it marks it (``settle_mark``);
- the two numbers the estimate is read from (issue 16; null for fits recorded before them):
  ``rank``, the median rank of ``A A^T`` (the flat dimensions the flow needs), ``local_dim``
  and ``local_dim_spread``, the median local dimension of the codes in those directions
  (``mflow.local``) and its spread over points; ``curved``, true when the estimate is below
  the rank: the data are locally lower-dimensional than the flat space they need (a closed
  or curved manifold), marked wherever it appears (``curved_note``);
- the spectra: ``eig_median``, ``eig_q10`` and ``eig_q90``, the median and the 10%-90% band of
  each ranked eigenvalue of ``A A^T`` over the ok fits;
- the readout: ``rule``, ``threshold`` (null for ``gap``), ``floor`` (the noise variance the
  rules compare with, ``sigma2 + noise_floor**2``, see ``mflow.readout``) and ``gap``, the
  median over ok fits of the drop ``log(lambda_k + floor) - log(lambda_{k+1} + floor)`` at
  each fit's cut ``k``.

- across floors (issue 15; ``pipelines.analysis.scales``): ``log_volume``, the median over ok
  fits of ``log det(A A^T + sigma2 I)``, and ``log_volumes`` (per fit, seed order); for a
  group whose family (its axes less ``noise_floor``) has fits at three or more floors, the
  scale readout ``id_scale`` (``id_scale_raw``, ``id_scale_min``, ``id_scale_max`` over
  seeds), ``noise_scale``, ``scale_low`` and ``scale_high`` (``mflow.scales``); ``--rule
  scale`` gives one row per family with ``id_scale`` as its estimate (``family_summary``).

With another rule, ``summarize`` reads every fit's stored final spectrum again
(``pipelines.analysis.readouts.recompute``, no refit); ``pipelines.analysis.stored`` writes
the summary as ``<out>/<name>/summary.parquet``.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mflow.outcome import READOUT
from mflow.scales import log_volume
from pipelines.analysis.columns import SUMMARY_SCHEMA
from pipelines.analysis.readouts import (
    AnalysisError,
    as_float,
    as_verdict,
    check_rule,
    recompute,
)
from pipelines.analysis.scales import (
    SCALE_RULE,
    add_scale_columns,
    family_summary,
)
from pipelines.results.records import group_label

__all__ = [
    "BAND",
    "curved_note",
    "group_id",
    "settle_mark",
    "summarize",
]

BAND = (0.1, 0.9)  # quantiles of the eigenvalue band (eig_q10, eig_q90)


# -- groups ----------------------------------------------------------------------------------


def group_id(label: str) -> str:
    """A filename-safe, stable id for a group label: a readable part and a short hash.

    Example:
        >>> group_id("dataset=sine noise_floor=0.01")
        'dataset-sine_noise_floor-0.01-fe3b7a71'
        >>> group_id("")
        'all-e3b0c442'
    """
    digest = hashlib.sha256(label.encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", label.replace("=", "-")).strip("_.-")[:60]
    return f"{readable or 'all'}-{digest}"


def _labels(fits: pd.DataFrame, group_by: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Per fit: its group label and the JSON of its grouping axes."""
    labels, axes_json = [], []
    for fit_id, raw, stored in zip(fits["fit_id"], fits["axes"], fits["group"], strict=True):
        axes = json.loads(raw) if raw else {}
        if group_by is None:
            keep = {k: v for k, v in axes.items() if group_label({k: v})}  # no seed axes
            labels.append(stored if isinstance(stored, str) else group_label(axes))
        else:
            missing = [name for name in group_by if name not in axes]
            if missing:
                known = ", ".join(axes) or "none"
                raise AnalysisError(
                    f"--group-by: {fit_id} has no grid axis {missing[0]!r} (its axes: {known})"
                )
            keep = {name: axes[name] for name in group_by}
            labels.append(" ".join(f"{k}={v}" for k, v in keep.items()))
        axes_json.append(json.dumps(keep))
    return labels, axes_json


def _natural(value: Any) -> tuple:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return (1, str(value))
    return (0, float(value))


# -- the summary -----------------------------------------------------------------------------


def _group_verdict(verdicts: Sequence[bool | None]) -> bool | None:
    """The group's ``settled`` from its ok fits' verdicts: all settled, one not (or no ok
    fit), or null when the rest were not judged.

    Example:
        >>> _group_verdict([True, True]), _group_verdict([True, None, False])
        (True, False)
        >>> _group_verdict([True, None]), _group_verdict([])
        (None, False)
    """
    if not verdicts or False in verdicts:
        return False
    return True if all(verdicts) else None


def settle_mark(settled: Any) -> str:
    """What to write beside an estimate whose group has verdict ``settled`` (a summary row's
    ``settled``): nothing when it settled, else why it is not an answer.

    Example:
        >>> settle_mark(True), settle_mark(False), settle_mark(None)
        ('', 'unsettled', 'not judged')
    """
    verdict = as_verdict(settled)
    return "" if verdict else ("unsettled" if verdict is False else "not judged")


def curved_note(rank: Any, local: Any, estimate: Any) -> str:
    """What to write beside an estimate below the rank of ``A A^T`` (a summary row's ``rank``,
    ``local_dim`` and ``estimate``): the data need ``rank`` flat dimensions but are locally
    fewer, a closed or curved manifold. Nothing when they agree or a number is missing.

    Example:
        >>> curved_note(3.0, 2.1, 2.0)
        'needs 3 flat dimensions; locally 2.1-dimensional: curved or closed'
        >>> curved_note(6.0, 5.8, 6.0), curved_note(None, 2.0, 2.0)
        ('', '')
    """
    values = [as_float(v) for v in (rank, local, estimate)]
    if None in values or values[2] >= values[0]:
        return ""
    return (f"needs {values[0]:g} flat dimensions; locally {values[1]:.1f}-dimensional: "
            "curved or closed")


def _only(values: pd.Series) -> Any:
    """The one value a column takes in a group, else None."""
    distinct = values.dropna().unique()
    if len(distinct) != 1:
        return None
    value = distinct[0]
    return value.item() if hasattr(value, "item") else value


def _only_int(values: pd.Series) -> int | None:
    value = _only(values)
    return None if value is None else int(value)


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if len(values) else None


def _spectra(spectra: list[np.ndarray]) -> tuple[list[float], list[float], list[float]] | None:
    if not spectra:
        return None
    width = min(s.size for s in spectra)
    stack = np.stack([s[:width] for s in spectra])
    med, lo, hi = np.quantile(stack, [0.5, *BAND], axis=0)
    return med.tolist(), lo.tolist(), hi.tolist()


def _column(group: pd.DataFrame, name: str) -> pd.Series:
    """A fits-table column, or nulls where the table predates it."""
    return group[name] if name in group else pd.Series([None] * len(group), index=group.index)


def _group_row(survey: str, label: str, axes: str, group: pd.DataFrame) -> dict[str, Any]:
    group = group.sort_values(["seed", "fit_id"], na_position="last")
    ok = group[(group["status"] == "ok") & group["id_estimate"].notna()]
    estimates = [int(e) for e in ok["id_estimate"]]
    verdicts = [as_verdict(v) for v in ok["settled"]]
    settled = _group_verdict(verdicts)
    estimate = _median(estimates)
    rank = _median([int(r) for r in ok["id_rank"].dropna()])
    local = _median([float(v) for v in ok["local_dim"].dropna()])
    spread = _median([float(v) for v in ok["local_dim_spread"].dropna()])
    spectra = [np.asarray(e, dtype=np.float64) for e in ok["eigenvalues"]]
    bands = _spectra(spectra)
    volumes = [
        log_volume(e, sigma2) if s == "ok" and e is not None and not pd.isna(v)
        and np.all(np.isfinite(e)) else None
        for s, e, v, sigma2 in zip(group["status"], group["eigenvalues"], group["id_estimate"],
                                   group["sigma2"], strict=True)
    ]
    rules = group["id_rule"].dropna().unique()
    thresholds = group.loc[group["id_rule"] == "threshold", "threshold"].dropna().unique()
    return {
        "survey": survey,
        "group": label,
        "group_id": group_id(label),
        "axes": axes,
        "dataset": _only(group["dataset"]),
        "subset": _only_int(group["subset"]),
        "class": _only_int(group["class"]),
        "noise_floor": _only(group["noise_floor"]),
        "true_dim": _only_int(group["true_dim"]),
        "ambient_dim": _only_int(group["ambient_dim"]),
        "n": None if group["n"].isna().all() else int(group["n"].median()),
        "fits": len(group),
        "ok": len(ok),
        "diverged": int((group["status"] == "diverged").sum()),
        "failed": int((group["status"] == "failed").sum()),
        "seeds": [None if pd.isna(s) else int(s) for s in group["seed"]],
        "estimates": [
            int(e) if s == "ok" and not pd.isna(e) else None
            for s, e in zip(group["status"], group["id_estimate"], strict=True)
        ],
        "estimate": estimate,
        "estimate_min": min(estimates) if estimates else None,
        "estimate_max": max(estimates) if estimates else None,
        "answer": estimate if settled else None,
        "settled": settled,
        "settled_fits": sum(v is True for v in verdicts),
        "settled_per_fit": [
            as_verdict(v) if s == "ok" and not pd.isna(e) else None
            for s, e, v in zip(group["status"], group["id_estimate"], group["settled"],
                               strict=True)
        ],
        "rank": rank,
        "local_dim": local,
        "local_dim_spread": spread,
        "curved": None if rank is None or local is None or estimate is None else estimate < rank,
        "jacobian_dim": _median([float(v) for v in _column(group, "jacobian_dim").dropna()]),
        "flowless_dim": _median([float(v) for v in _column(group, "flowless_dim").dropna()]),
        "collapsed": int((_column(group, "collapsed") == True).sum()),  # noqa: E712 (nullable)
        "older_readout": int(((group["status"] == "ok")
                              & (_column(group, "readout") != READOUT)).sum()),
        "rule": str(rules[0]) if len(rules) == 1 else ("mixed" if len(rules) else None),
        "threshold": float(thresholds[0]) if len(thresholds) == 1 else None,
        "floor": _median(group["floor"].dropna().tolist()),
        "sigma2": _median(group["sigma2"].dropna().tolist()),
        "gap": _median(ok["gap"].dropna().tolist()),
        "log_volume": _median([v for v in volumes if v is not None]),
        "log_volumes": volumes,
        "eig_median": bands[0] if bands else None,
        "eig_q10": bands[1] if bands else None,
        "eig_q90": bands[2] if bands else None,
        "steps": None if ok["steps"].isna().all() else int(ok["steps"].median()),
        "wall_s": _median(group["wall_s"].dropna().tolist()),
        "fit_ids": list(group["fit_id"]),
    }


def summarize(
    fits: pd.DataFrame,
    *,
    rule: str | None = None,
    threshold: float | None = None,
    group_by: Sequence[str] | None = None,
    fit_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per group of ``fits`` (see the module docstring for the columns).

    Args:
        fits: the fits table (``Store.read_fits``).
        rule: read every spectrum again with this rule; ``None`` keeps the stored estimates;
            ``scale`` reads each family across its floors (``pipelines.analysis.scales``).
        threshold: the ``threshold`` rule's factor; ``None``: each fit's configured one.
        group_by: the grid axes to group by; ``None``: every axis but the seed.
        fit_ids: keep only these fits, and order the groups as they first appear here (the
            plan of a job); ``None``: every fit, groups sorted by their axis values.
    """
    check_rule(rule, threshold)
    if rule == SCALE_RULE:  # one row per family, read across its floors
        per_floor = summarize(fits, group_by=group_by, fit_ids=fit_ids)
        try:
            return family_summary(per_floor, lambda axes: summarize(
                fits, group_by=axes, fit_ids=fit_ids))
        except ValueError as exc:
            raise AnalysisError(str(exc)) from None
    table = fits
    if fit_ids is not None:
        order = {fit_id: i for i, fit_id in enumerate(fit_ids)}
        table = table[table["fit_id"].isin(order)]
        table = table.iloc[np.argsort(table["fit_id"].map(order).to_numpy(), kind="stable")]
    if table.empty:
        return SUMMARY_SCHEMA.empty_table().to_pandas()
    table = recompute(table, rule, threshold).reset_index(drop=True)
    labels, axes = _labels(table, list(group_by) if group_by is not None else None)
    table = table.assign(_label=labels, _axes=axes)
    firsts = table.drop_duplicates("_label")
    if fit_ids is None:
        firsts = firsts.iloc[
            sorted(range(len(firsts)), key=lambda i: tuple(
                _natural(v) for v in json.loads(firsts["_axes"].iloc[i]).values()
            ))
        ]
    survey = str(_only(table["survey"]) or "")
    rows = [
        _group_row(survey, label, axes_json, table[table["_label"] == label])
        for label, axes_json in zip(firsts["_label"], firsts["_axes"], strict=True)
    ]
    frame = pa.Table.from_pylist(rows, schema=SUMMARY_SCHEMA).to_pandas()
    return add_scale_columns(frame)


