"""The report's tables as text: headers and rows of strings, no markup.

``table_rows`` is the main table (the console, HTML and LaTeX tables all use it),
``fits_settling`` a group's fits seed by seed, ``group_facts`` a group's facts and baselines,
``method_facts`` what the page's method paragraph depends on. ``pipelines.report.page`` turns
them into HTML and LaTeX.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipelines.analysis.summary import curved_note, settle_mark
from pipelines.report import plots

__all__ = ["fits_settling", "group_facts", "method_facts", "table_rows"]

Table = tuple[list[str], list[list[str]]]  # headers, rows


def _fmt(value: Any, digits: int = 2) -> str:
    """A number as short text: an integer without decimals, ``–`` for a missing one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float | np.floating):
        value = float(value)
        return str(int(value)) if value.is_integer() else f"{value:.{digits}f}"
    return str(value)


def _range(mid: Any, lo: Any, hi: Any, digits: int = 2) -> str:
    """``mid [lo–hi]``; the range left out where it is one value or missing."""
    if mid is None or pd.isna(mid):
        return "–"
    text = _fmt(mid, digits)
    if lo is not None and hi is not None and not pd.isna(lo) and not pd.isna(hi) and lo != hi:
        text += f" [{_fmt(lo, digits)}–{_fmt(hi, digits)}]"
    return text


def _estimate(row: Mapping[str, Any], digits: int = 1) -> str:
    """A group's estimate, median [min–max], marked when the group has not settled (it is
    then where training stopped, not an answer; ``pipelines.analysis.summary.settle_mark``)."""
    text = _range(row["estimate"], row["estimate_min"], row["estimate_max"], digits)
    mark = settle_mark(row.get("settled"))
    return f"{text} ({mark})" if mark and text != "–" else text


def _local(row: Mapping[str, Any]) -> str:
    """The codes' local dimension ± its spread over points, starred where it is below the rank
    of ``A A^T`` (``pipelines.analysis.summary.curved_note``)."""
    local = row.get("local_dim")
    if local is None or pd.isna(local):
        return "–"
    text = f"{float(local):.1f}"
    spread = row.get("local_dim_spread")
    if spread is not None and not pd.isna(spread):
        text += f"±{float(spread):.1f}"
    return text + (" *" if curved_note(row.get("rank"), local, row["estimate"]) else "")


def _figure(value: Any) -> str:
    """A settling figure: three significant digits, ``∞`` for an infinite drift."""
    if value is None or pd.isna(value):
        return "–"
    return "∞" if math.isinf(value) else f"{float(value):.3g}"


def _baseline_names(baselines: pd.DataFrame | None) -> list[str]:
    """The estimators with an estimate somewhere; one skipped or failed everywhere is left
    out (the group notes say why)."""
    if baselines is None or baselines.empty:
        return []
    return [name for name in dict.fromkeys(baselines["estimator"])
            if baselines.loc[baselines["estimator"] == name, "estimate"].notna().any()]


def table_rows(summary: pd.DataFrame, baselines: pd.DataFrame | None = None) -> Table:
    """The main table as text: headers and one row per group (the console, HTML and LaTeX
    tables all use it)."""
    names = _baseline_names(baselines)
    # The rank and the local dimension: shown when some group has them; so are the model's
    # Jacobian count and the ablation (the local readout without a flow), and the
    # ok/diverged/failed counts only where a fit did not end ok.
    two = [c for c in ("rank", "local_dim") if c in summary and summary[c].notna().any()]
    more = [c for c in ("jacobian_dim", "flowless_dim")
            if c in summary and summary[c].notna().any()]
    bad = bool((summary["diverged"] + summary["failed"]).sum())
    headers = [plots.axis_name(summary), "true", "ours", *(["rank", "local"] if two else []),
               *[{"jacobian_dim": "jac", "flowless_dim": "no flow"}[c] for c in more],
               "by seed", "settled", *(["ok/div/fail"] if bad else []), "gap", *names]
    rows = []
    for row, label in zip(summary.to_dict("records"), plots.short_labels(summary), strict=True):
        per_seed = " ".join("·" if e is None or pd.isna(e) else str(int(e))
                            for e in (row["estimates"] if row["estimates"] is not None else []))
        cells = [
            label,
            _fmt(row["true_dim"]),
            _estimate(row),
            *([_fmt(row.get("rank")), _local(row)] if two else []),
            *[_fmt(row.get(c), 1) for c in more],
            per_seed,
            f"{_fmt(row.get('settled_fits'))}/{row['ok']}",
            *([f"{row['ok']}/{row['diverged']}/{row['failed']}"] if bad else []),
            _fmt(row["gap"], 1),
        ]
        for name in names:
            match = baselines[(baselines["group_id"] == row["group_id"])
                              & (baselines["estimator"] == name)]
            if match.empty:
                cells.append("–")
            else:
                b = match.iloc[0]
                cells.append(_range(b["estimate"], b["estimate_min"], b["estimate_max"]))
        rows.append(cells)
    return headers, rows


def fits_settling(row: Mapping[str, Any], fits: pd.DataFrame) -> Table:
    """A group's fits, seed by seed: status, estimate, whether it settled and the figures
    that decided it (steps the estimate held, drift, margin; see ``mflow.settle``)."""
    table = fits.set_index("fit_id")
    headers = ["fit", "seed", "status", "estimate", "settled", "held (steps)", "drift", "margin"]
    rows = []
    for i, fit_id in enumerate(row["fit_ids"]):
        fit = table.loc[fit_id]
        estimate = row["estimates"][i] if row["estimates"] is not None else None
        verdict = row["settled_per_fit"][i] if row.get("settled_per_fit") is not None else None
        rows.append([
            fit_id, _fmt(fit["seed"]), str(fit["status"]), _fmt(estimate),
            "–" if verdict is None or pd.isna(verdict) else ("yes" if verdict else "no"),
            _fmt(fit.get("settle_stable_steps")), _figure(fit.get("settle_drift")),
            _figure(fit.get("settle_margin")),
        ])
    return headers, rows


def group_facts(row: Mapping[str, Any], baselines: pd.DataFrame) -> list[list[str]]:
    """A group's facts as ``[name, value]`` pairs: our estimate and how it was read, the
    data's dimensions, then each classical estimator's estimate, time and note."""
    threshold = row["threshold"]
    note = curved_note(row.get("rank"), row.get("local_dim"), row["estimate"])
    facts = [
        ["estimate", _estimate(row)],
        ["settled", f"{_fmt(row.get('settled_fits'))} of {row['ok']} ok fits"],
        ["flat dimensions (rank of A Aᵀ)", _fmt(row.get("rank"))],
        ["local dimension of the codes", _local(row).removesuffix(" *")],
        ["the model's own count (Jacobian)", _fmt(row.get("jacobian_dim"), 1)],
        ["the same local readout without a flow", _fmt(row.get("flowless_dim"), 1)],
        *([["curved or closed", note]] if note else []),
        ["true dimension", _fmt(row["true_dim"])],
        ["ambient dimension", _fmt(row["ambient_dim"])],
        ["points per fit", _fmt(row["n"])],
        ["fits ok / diverged / failed", f"{row['ok']} / {row['diverged']} / {row['failed']}"],
        ["rule", f"{row['rule']}" + (f" × {threshold:g}" if threshold is not None
                                     and not pd.isna(threshold) else "")],
        ["noise floor σ² + σx²", _fmt(row["floor"], 6)],
        ["log-gap at the cut", _fmt(row["gap"], 2)],
    ]
    mine = baselines[baselines["group_id"] == row["group_id"]] if len(baselines) else None
    for b in [] if mine is None else mine.to_dict("records"):
        value = _range(b["estimate"], b["estimate_min"], b["estimate_max"])
        value += f" ({b['wall_s']:.2f} s)"
        if isinstance(b["note"], str) and b["note"]:
            value += f" — {b['note']}"
        facts.append([b["estimator"], value])
    return facts


def method_facts(summary: pd.DataFrame, fits: pd.DataFrame, baselines: pd.DataFrame,
                 noise: str) -> dict[str, Any]:
    """What the method paragraph says about this survey: the rules used, the threshold
    factors, the noise floors, the training steps and the baselines (names, and whether
    they saw the training noise)."""
    thresholds = sorted({t for t in summary["threshold"].dropna()})
    return {
        "rules": sorted({r for r in summary["rule"].dropna()}),
        "factor": ", ".join(f"{t:g}" for t in thresholds) or "the configured factor",
        "floors": [f"{f:.3g}" for f in sorted({f for f in summary["floor"].dropna()})],
        "steps": sorted({int(s) for s in fits["steps"].dropna()}),
        "baselines": ", ".join(dict.fromkeys(baselines["estimator"])) if len(baselines) else "",
        "noisy_baselines": noise != "none",
    }
