"""Accuracy on constructed manifolds (issue 9): our estimate against the classical estimators.

For each survey (by default ``accuracy``, the development set, and ``accuracy_heldout``), after
``survey run`` and ``survey report``, this prints as markdown

- a table per case: the true dimension ``d``, the ambient ``D``, our estimate and the two
  numbers it is read from (issue 16: ``rank``, the eigenvalues of ``A A^T`` the fit's readout
  counts; ``local``, the local dimension of the codes in those directions, ``mflow.local``;
  ours is ``local`` rounded, at most ``rank``) and the classical estimates of
  ``survey report`` on the same points (TwoNN, MLE, lPCA, DANCo);
- a table per estimator: how many cases it gets exactly right (the classical estimates, which
  are real numbers, rounded to the nearest integer, halves up), and its mean absolute error
  ``mean |d_hat - d|``, on the raw and on the rounded values.

``survey report`` skips DANCo above ``pipelines.analysis.baselines.DANCO_MAX_DIM``
ambient dimensions (its
cost grows with D); with ``--danco-above-limit`` this script runs it there too, with the same
parameters on the same points, and marks those values with ``*``. ``--spectra`` adds each fit's
leading eigenvalues of ``A A^T`` and the readout's floor.

Run: python benchmarks/accuracy.py [--out results] [--danco-above-limit] [--spectra] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits  # scikit-learn's; one BLAS thread

from pipelines.analysis.baselines import DANCO_MAX_DIM, ESTIMATORS, data_sets, points
from pipelines.results import load

CLASSICAL = ("TwoNN", "MLE", "lPCA", "DANCo")
OURS = "ours"
FLOW = ("rank", "local")  # the two numbers ours is read from (null for older fits)


@dataclass(frozen=True)
class Case:
    """One manifold of a survey: its known dimension and every estimator's value."""

    label: str
    true_dim: int
    ambient_dim: int
    estimates: dict[str, float | None]  # estimator -> estimate (None: none)
    marked: frozenset[str]  # estimators whose value this script computed (DANCo above limit)
    spectrum: tuple[float, ...]  # our fit's eigenvalues of A A^T, descending
    floor: float | None


def nearest(value: float) -> int:
    """Round to the nearest integer, halves up: ``floor(value + 1/2)``.

    Example:
        >>> nearest(1.5), nearest(2.49)
        (2, 2)
    """
    return math.floor(value + 0.5)


def _label(axes: str, group: str) -> str:
    parsed = json.loads(axes) if axes else {}
    return str(parsed.get("case", group))


def _danco(configs: Sequence[str]) -> float | None:
    """DANCo with ``survey report``'s parameters on the points of a group's fits (median over
    its data sets), ignoring ``DANCO_MAX_DIM``."""
    params, make = ESTIMATORS["DANCo"]
    values = []
    for item in data_sets(configs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values.append(float(make(**params).fit(points(item)).dimension_))
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else None


def cases(name: str, out: str, danco_above_limit: bool = False) -> list[Case]:
    """The cases of survey ``name`` under ``out``, in the order of its summary."""
    fits, _, summary, baselines = load(name, out=out)
    if baselines.empty:
        raise SystemExit(f"{name}: no baselines under {out}; run `survey report {name}` first")
    table = baselines.pivot(index="group_id", columns="estimator", values="estimate")
    by_fit = fits.set_index("fit_id")
    result = []
    for row in summary.itertuples(index=False):
        values: dict[str, float | None] = {OURS: row.estimate}
        for name, column in zip(FLOW, ("rank", "local_dim"), strict=True):
            value = getattr(row, column, None)
            values[name] = None if value is None or pd.isna(value) else float(value)
        for estimator in CLASSICAL:
            value = table.get(estimator, pd.Series(dtype=float)).get(row.group_id)
            values[estimator] = None if value is None or pd.isna(value) else float(value)
        marked = set()
        if danco_above_limit and values["DANCo"] is None and row.ambient_dim > DANCO_MAX_DIM:
            values["DANCo"] = _danco([by_fit.loc[f, "config"] for f in row.fit_ids])
            marked.add("DANCo")
        first = by_fit.loc[row.fit_ids[0]]
        result.append(
            Case(
                label=_label(row.axes, row.group),
                true_dim=int(row.true_dim),
                ambient_dim=int(row.ambient_dim),
                estimates=values,
                marked=frozenset(marked),
                spectrum=tuple(float(v) for v in first["eigenvalues"]),
                floor=None if pd.isna(row.floor) else float(row.floor),
            )
        )
    return result


def _cell(case: Case, estimator: str) -> str:
    value = case.estimates[estimator]
    if value is None:
        return "—"
    text = str(int(value)) if estimator in (OURS, "rank") else f"{value:.2f}"
    return text + ("*" if estimator in case.marked else "")


def case_table(items: Sequence[Case], spectra: bool = False) -> str:
    """Markdown: one row per case, the true dimension beside every estimate."""
    head = ["case", "true d", "D", OURS, *FLOW, *CLASSICAL] + (["λ of A Aᵀ (leading)", "floor"]
                                                       if spectra else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in items:
        cells = [case.label, str(case.true_dim), str(case.ambient_dim)]
        cells += [_cell(case, e) for e in (OURS, *FLOW, *CLASSICAL)]
        if spectra:
            lead = case.spectrum[: case.true_dim + 2]
            cells += [", ".join(f"{v:.2g}" for v in lead), f"{case.floor:.2g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scores(items: Sequence[Case], estimator: str) -> dict[str, float]:
    """Exactly right (rounded), and ``mean |d_hat - d|`` on raw and rounded values, over the
    cases where ``estimator`` gave a value."""
    pairs = [(c.estimates[estimator], c.true_dim) for c in items
             if c.estimates[estimator] is not None]
    raw = [abs(v - d) for v, d in pairs]
    rounded = [abs(nearest(v) - d) for v, d in pairs]
    return {
        "right": sum(r == 0 for r in rounded),
        "cases": len(pairs),
        "mae": float(np.mean(raw)) if raw else math.nan,
        "mae_rounded": float(np.mean(rounded)) if rounded else math.nan,
    }


def accuracy_table(items: Sequence[Case]) -> str:
    """Markdown: one row per estimator."""
    lines = ["| estimator | exactly right | MAE (raw) | MAE (rounded) |", "|---|---|---|---|"]
    for estimator in (OURS, *FLOW, *CLASSICAL):
        s = scores(items, estimator)
        if not s["cases"]:
            continue
        lines.append(
            f"| {estimator} | {s['right']} / {s['cases']} | {s['mae']:.2f} | "
            f"{s['mae_rounded']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=["accuracy", "accuracy_heldout"])
    parser.add_argument("--out", default="results", help="results folder of `survey run`")
    parser.add_argument("--danco-above-limit", action="store_true",
                        help=f"run DANCo where `survey report` skipped it (D > {DANCO_MAX_DIM})")
    parser.add_argument("--spectra", action="store_true", help="add our fits' leading spectra")
    args = parser.parse_args(argv)
    for name in args.names:
        start = time.perf_counter()
        with threadpool_limits(1):
            items = cases(name, args.out, args.danco_above_limit)
        print(f"### {name}: {len(items)} cases\n")
        print(case_table(items, args.spectra) + "\n")
        print(accuracy_table(items) + "\n")
        if any(c.marked for c in items):
            print(f"\\* DANCo run by this script (D > {DANCO_MAX_DIM}; `survey report` skips it); "
                  f"{time.perf_counter() - start:.0f} s\n")


if __name__ == "__main__":
    main()
