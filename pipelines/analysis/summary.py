"""Analysis of a survey's stored fits: one summary row per group, and readouts redone.

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

- across floors (issue 15; ``pipelines.analysis.scales``): ``log_volume``, the median over ok fits
of
  ``log det(A A^T + sigma2 I)``, and ``log_volumes`` (per fit, seed order); for a group whose
  family (its axes less ``noise_floor``) has fits at three or more floors, the scale readout
  ``id_scale`` (``id_scale_raw``, ``id_scale_min``, ``id_scale_max`` over seeds),
  ``noise_scale``, ``scale_low`` and ``scale_high`` (``mflow.scales``); ``--rule scale``
  gives one row per family with ``id_scale`` as its estimate (``family_summary``).

``recompute`` reads every fit's stored final spectrum again with another rule (no refit);
``write_summary`` stores the summary as ``<out>/<name>/summary.parquet`` (atomically, with the
store's writer).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mflow.config import FitSpec
from mflow.local import headline_dimension
from mflow.readout import RULES, estimate_dimension, log_gap_at, readout_floor
from mflow.scales import log_volume
from pipelines.analysis.scales import (
    SCALE_COLUMNS,
    SCALE_RULE,
    add_scale_columns,
    family_summary,
    update_scales,
)
from pipelines.results.store import Store, group_label

__all__ = [
    "BAND",
    "SUMMARY_SCHEMA",
    "AnalysisError",
    "curved_note",
    "group_id",
    "read_summary",
    "read_table",
    "recompute",
    "recompute_curves",
    "settle_mark",
    "summarize",
    "summary_path",
    "update_summary",
    "write_summary",
    "write_table",
]

BAND = (0.1, 0.9)  # quantiles of the eigenvalue band (eig_q10, eig_q90)

_FLOATS = pa.list_(pa.float64())
SUMMARY_SCHEMA = pa.schema(
    [
        ("survey", pa.string()),
        ("group", pa.string()),  # "axis=value ...": the grid position without the seed
        ("group_id", pa.string()),  # filename-safe id of the group (baselines/<group_id>.parquet)
        ("axes", pa.string()),  # JSON: grouping axis -> value
        ("dataset", pa.string()),  # the following four: null when they vary within the group
        ("subset", pa.int64()),
        ("class", pa.int64()),
        ("noise_floor", pa.float64()),
        ("true_dim", pa.int64()),
        ("ambient_dim", pa.int64()),
        ("n", pa.int64()),  # training points per fit (median)
        ("fits", pa.int64()),
        ("ok", pa.int64()),
        ("diverged", pa.int64()),
        ("failed", pa.int64()),
        ("seeds", pa.list_(pa.int64())),
        ("estimates", pa.list_(pa.int64())),  # per fit, seed order; null when not ok
        ("estimate", pa.float64()),  # median over ok fits
        ("estimate_min", pa.int64()),
        ("estimate_max", pa.int64()),
        ("answer", pa.float64()),  # estimate when the group settled, else null
        ("settled", pa.bool_()),  # every ok fit settled; null: not judged (see above)
        ("settled_fits", pa.int64()),  # ok fits that settled
        ("settled_per_fit", pa.list_(pa.bool_())),  # seed order; null when not ok or not judged
        ("rank", pa.float64()),  # median rank of A A^T over ok fits (null: not recorded)
        ("local_dim", pa.float64()),  # median local dimension of the codes (mflow.local)
        ("local_dim_spread", pa.float64()),  # median of its spread over points
        ("curved", pa.bool_()),  # estimate < rank: locally fewer dimensions than flat ones
        ("rule", pa.string()),  # the readout rule of the estimates ("mixed" if several)
        ("threshold", pa.float64()),  # threshold rule's factor; null for gap
        ("floor", pa.float64()),  # sigma2 + noise_floor**2 (median over the group's fits)
        ("sigma2", pa.float64()),  # the prior's spread noise variance
        ("gap", pa.float64()),  # median over ok fits of the log-gap at each fit's cut
        ("log_volume", pa.float64()),  # median over ok fits of log det(A A^T + sigma2 I)
        ("log_volumes", _FLOATS),  # per fit, seed order; null when not ok
        *SCALE_COLUMNS.items(),  # the scale readout of the family (analysis.scales)
        ("eig_median", _FLOATS),  # per rank, over ok fits
        ("eig_q10", _FLOATS),
        ("eig_q90", _FLOATS),
        ("steps", pa.int64()),  # median over ok fits
        ("wall_s", pa.float64()),  # median training time of a fit
        ("fit_ids", pa.list_(pa.string())),  # seed order
    ]
)


class AnalysisError(ValueError):
    """An analysis that cannot be done as asked (unknown rule or axis); the message says why."""


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


# -- readouts --------------------------------------------------------------------------------


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
    rank = _stored(stored[1] if isinstance(stored, tuple) else None)
    if rule is None:
        estimate = _stored(stored[0] if isinstance(stored, tuple) else stored)
    else:
        params = {"threshold": factor} if use == "threshold" else {}
        rank = estimate_dimension(values, floor, use, **params)
        estimate = rank if _stored_float(local) is None else headline_dimension(rank, local)
    gap = None
    cut = rank if rank is not None else estimate
    if cut is not None and 0 <= cut <= values.size:
        gap = log_gap_at(values, floor, cut)
    return estimate, use, factor, floor, spec.prior.sigma2, gap, rank


def _check_rule(rule: str | None, threshold: float | None) -> None:
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
    _check_rule(rule, threshold)
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
    verdicts = [_verdict(v) for v in fits["settled"]] if "settled" in fits else [None] * len(rows)
    if rule is not None:
        verdicts = [v if new == _stored(old) else None
                    for v, new, old in zip(verdicts, estimates, fits["id_estimate"], strict=True)]
    out["settled"] = pd.array(verdicts, dtype="boolean")
    out["id_estimate"] = pd.array(estimates, dtype="Int64")
    out["id_rule"] = [r[1] for r in rows]
    out["threshold"] = [np.nan if r[2] is None else float(r[2]) for r in rows]
    out["floor"] = [r[3] for r in rows]
    out["sigma2"] = [r[4] for r in rows]
    out["gap"] = [np.nan if r[5] is None else r[5] for r in rows]
    out["id_rank"] = pd.array([r[6] for r in rows], dtype="Int64")
    out["local_dim"] = [np.nan if _stored_float(v) is None else float(v) for v in locals_]
    if "local_dim_spread" not in out:
        out["local_dim_spread"] = np.nan
    return out


def recompute_curves(
    curves: pd.DataFrame, fits: pd.DataFrame, rule: str | None = None,
    threshold: float | None = None,
) -> pd.DataFrame:
    """The curves with each logged step's ``estimate`` read again with ``rule`` (as
    ``recompute`` does for the final spectra); ``rule=None`` returns them unchanged."""
    _check_rule(rule, threshold)
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


# -- the summary -----------------------------------------------------------------------------


def _verdict(value: Any) -> bool | None:
    """A stored ``settled`` as True, False or None (null, NaN or pandas' NA)."""
    return None if value is None or pd.isna(value) else bool(value)


def _stored(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _stored_float(value: Any) -> float | None:
    """A stored number as a float, or None (null, NaN or pandas' NA)."""
    return None if value is None or pd.isna(value) else float(value)


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
    verdict = _verdict(settled)
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
    values = [_stored_float(v) for v in (rank, local, estimate)]
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


def _group_row(survey: str, label: str, axes: str, group: pd.DataFrame) -> dict[str, Any]:
    group = group.sort_values(["seed", "fit_id"], na_position="last")
    ok = group[(group["status"] == "ok") & group["id_estimate"].notna()]
    estimates = [int(e) for e in ok["id_estimate"]]
    verdicts = [_verdict(v) for v in ok["settled"]]
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
            _verdict(v) if s == "ok" and not pd.isna(e) else None
            for s, e, v in zip(group["status"], group["id_estimate"], group["settled"],
                               strict=True)
        ],
        "rank": rank,
        "local_dim": local,
        "local_dim_spread": spread,
        "curved": None if rank is None or local is None or estimate is None else estimate < rank,
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
    _check_rule(rule, threshold)
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


# -- stored ----------------------------------------------------------------------------------


def summary_path(store: Store) -> str:
    """Where the summary of ``store``'s survey lives (a path on ``store.fs``)."""
    return f"{store.root}/summary.parquet"


def write_table(store: Store, path: str, frame: pd.DataFrame, schema: pa.Schema) -> str:
    """Store ``frame`` with ``schema`` at ``path`` on ``store.fs``, atomically; returns it."""
    rows = pa.Table.from_pandas(frame, schema=schema, preserve_index=False).to_pylist()
    store._write(rows, schema, path)  # the store's one atomic writer
    return path


def read_table(store: Store, path: str, schema: pa.Schema) -> pd.DataFrame | None:
    """The table stored at ``path`` on ``store.fs``, or ``None`` when there is none yet."""
    if store.fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    return pq.read_table(path, filesystem=store.fs, schema=schema).to_pandas()


def write_summary(store: Store, summary: pd.DataFrame) -> str:
    """Store ``summary`` as ``<out>/<name>/summary.parquet``, atomically; returns the path."""
    return write_table(store, summary_path(store), summary, SUMMARY_SCHEMA)


def read_summary(store: Store) -> pd.DataFrame | None:
    """The stored summary, or ``None`` when there is none yet."""
    return read_table(store, summary_path(store), SUMMARY_SCHEMA)


def update_summary(
    store: Store,
    fit_ids: Sequence[str] | None = None,
    warn: Callable[[str], None] | None = None,
    **options: Any,
) -> pd.DataFrame | None:
    """Summarise the stored fits and write ``summary.parquet`` (``options``: see ``summarize``),
    and ``scales.parquet`` when the survey has a noise-floor axis (``pipelines.analysis.scales``).

    Called at the end of ``survey run``; a failure here is reported through ``warn`` (when
    given) rather than raised, since the fits themselves are safely stored.
    """
    try:
        frame = summarize(store.read_fits(), fit_ids=fit_ids, **options)
        write_summary(store, frame)
        if options.get("rule") != SCALE_RULE:
            update_scales(store, frame)  # scales.parquet, for a survey across noise floors
        return frame
    except Exception as exc:
        if warn is None:
            raise
        warn(f"summary.parquet not written ({type(exc).__name__}: {exc}); "
             f"run `survey analyze {store.survey}` to write it")
        return None

