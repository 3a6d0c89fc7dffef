"""The figures of a survey's results, each a ``matplotlib.figure.Figure`` (no pyplot state).

From stored results only: per-group spectra (``spectrum_figure``, also one fit's for its
MLflow run), estimates beside the classical baselines (``estimates_figure``),
loss/spectrum/estimate trajectories over steps (``trajectory_figure``) and the dimension
across noise floors (``scales_figure``). The data and what a model made of them are drawn by
``pipelines.report.data_plots``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from pipelines.analysis.summary import settle_mark

__all__ = [
    "axis_name",
    "estimates_figure",
    "png",
    "scales_figure",
    "short_labels",
    "spectrum_figure",
    "trajectory_figure",
]

_OURS = "#1f77b4"
_BASELINE_COLOURS = ("#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_HATCHES = {"unsettled": "////", "not judged": "...."}  # our bar of a group not settled


def png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _varying(summary: pd.DataFrame) -> tuple[list[dict[str, Any]], list[str]]:
    axes = [json.loads(a) if a else {} for a in summary["axes"]]
    varying = [k for k in dict.fromkeys(k for a in axes for k in a)
               if len({json.dumps(a.get(k)) for a in axes}) > 1]
    return axes, varying


def axis_name(summary: pd.DataFrame) -> str:
    """What ``short_labels`` name: the one grid axis that varies between groups, else
    ``group``."""
    _, varying = _varying(summary)
    return varying[0] if len(varying) == 1 else "group"


def short_labels(summary: pd.DataFrame) -> list[str]:
    """Group labels without the axes that are the same in every group (``class=3`` -> ``3``
    when ``class`` is the only axis that varies).

    Example:
        >>> frame = pd.DataFrame({"group": ["a", "b"], "axes": ['{"class": 3, "n": 5}',
        ...                                                    '{"class": 4, "n": 5}']})
        >>> short_labels(frame)
        ['3', '4']
    """
    axes, varying = _varying(summary)
    if not varying:
        return [g or "all" for g in summary["group"]]
    if len(varying) == 1:
        return [str(a.get(varying[0])) for a in axes]
    return [" ".join(f"{k}={a.get(k)}" for k in varying) for a in axes]


def _positive(values: Sequence[float], low: float) -> np.ndarray:
    """``values`` for a log axis: at least ``low``; a non-finite one (a diverged fit's) NaN,
    not drawn."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), np.clip(values, low, None), np.nan)


def _title(row: Mapping[str, Any]) -> str:
    estimate = row.get("estimate")
    text = f"{row.get('group') or 'all'}: estimate {_num(estimate)}"
    lo, hi = row.get("estimate_min"), row.get("estimate_max")
    if lo is not None and hi is not None and not pd.isna(lo) and lo != hi:
        text += f" [{int(lo)}-{int(hi)}]"
    mark = settle_mark(row.get("settled"))
    if mark and estimate is not None and not pd.isna(estimate):
        text += f" ({mark})"
    if row.get("true_dim") is not None and not pd.isna(row.get("true_dim")):
        text += f" (true {int(row['true_dim'])})"
    return text


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def spectrum_figure(
    row: Mapping[str, Any], spectra: Sequence[Sequence[float]], seeds: Sequence[Any] = ()
) -> Figure:
    """A group's final spectra of ``A A^T`` on a log scale, rank by rank (the report draws
    one per group, ``pipelines.results.tracking`` one per fit, for its MLflow run).

    Each fit's spectrum (thin lines, labelled by ``seeds``), the median with its 10%-90% band,
    the spread-noise variance ``sigma2``, the noise floor ``sigma2 + noise_floor**2`` the
    rules compare with, the threshold (``threshold`` rule) and the cut after the estimate (its
    range over seeds shaded). ``row`` is the group's summary row, or a mapping with the same
    keys: ``group``, ``estimate``, ``estimate_min``/``max``, ``true_dim``, ``settled``,
    ``floor``, ``sigma2``, ``rule``, ``threshold`` and, for a group, ``eig_median``,
    ``eig_q10``/``q90``; a missing key is not drawn. Long spectra get a second panel, zoomed
    on the ranks around the cut.
    """
    median = row.get("eig_median")
    width = len(median) if median is not None else max((len(s) for s in spectra), default=0)
    top = row.get("estimate_max")
    top = 0 if top is None or pd.isna(top) else int(top)
    zoom = min(width, max(2 * top + 5, 20))
    panels = [width] if width <= 50 else [width, zoom]
    fig = Figure(figsize=(7 if len(panels) == 1 else 11, 3.6))
    for i, last in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        _spectrum_panel(ax, row, spectra, seeds, last, legend=i == len(panels) - 1)
        if len(panels) > 1:
            ax.set_title("all ranks" if i == 0 else f"first {last} ranks", fontsize=8)
    fig.suptitle(_title(row), fontsize=9)
    fig.tight_layout()
    return fig


def _spectrum_panel(ax: Any, row: Mapping[str, Any], spectra: Sequence[Sequence[float]],
                    seeds: Sequence[Any], last: int, legend: bool) -> None:
    floor = row.get("floor") or 1e-6
    sigma2 = row.get("sigma2")
    low = min(floor, sigma2 or floor) * 1e-2
    marker = "o-" if last <= 50 else "-"
    for i, values in enumerate(spectra):
        label = "fits" if i == 0 else None
        if i < len(seeds) and len(spectra) <= 6:
            label = f"seed {seeds[i]}"
        values = list(values)[:last]
        ax.semilogy(np.arange(1, len(values) + 1), _positive(values, low), lw=0.8, alpha=0.5,
                    label=label)
    median = row.get("eig_median")
    if median is not None and len(median):
        ranks = np.arange(1, min(len(median), last) + 1)
        cut = len(ranks)
        ax.fill_between(ranks, _positive(row["eig_q10"][:cut], low),
                        _positive(row["eig_q90"][:cut], low), color=_OURS, alpha=0.15, lw=0,
                        label="10%-90%")
        ax.semilogy(ranks, _positive(median[:cut], low), marker, color=_OURS, ms=3, lw=1.4,
                    label="median")
    if sigma2:
        ax.axhline(sigma2, color="black", ls="-.", lw=0.8, label=f"σ² = {sigma2:.2g}")
    ax.axhline(floor, color="grey", ls=":", lw=1, label=f"noise floor {floor:.2g}")
    threshold = row.get("threshold")
    if row.get("rule") == "threshold" and threshold is not None and not pd.isna(threshold):
        ax.axhline(threshold * floor, color="red", ls="--", lw=1,
                   label=f"threshold {threshold:g} × floor")
    estimate = row.get("estimate")
    if estimate is not None and not pd.isna(estimate):
        lo, hi = row.get("estimate_min"), row.get("estimate_max")
        if lo is not None and hi is not None and lo != hi:
            ax.axvspan(lo + 0.5, hi + 0.5, color="green", alpha=0.1)
        ax.axvline(estimate + 0.5, color="green", lw=1.2, label="cut")
    ax.set_xlim(0.5, last + 0.7)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("rank")
    ax.set_ylabel("eigenvalue of A Aᵀ")
    if legend:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def estimates_figure(summary: pd.DataFrame, baselines: pd.DataFrame | None = None) -> Figure:
    """Per group (e.g. one bar group per digit): our estimate (median, range over seeds as an
    error bar) beside each classical estimator's, and the true dimension where known. Our bar
    of a group that has not settled is hollow and hatched (``////`` unsettled, ``....`` not
    judged; see ``pipelines.analysis.summary``)."""
    labels = short_labels(summary)
    names = [] if baselines is None or baselines.empty else list(
        dict.fromkeys(baselines["estimator"])
    )
    series = [("ours", list(summary["estimate"]), list(summary["estimate_min"]),
               list(summary["estimate_max"]), _OURS)]
    for i, name in enumerate(names):
        rows = baselines[baselines["estimator"] == name].set_index("group_id")
        if rows["estimate"].isna().all():
            continue  # skipped or failed everywhere: the table says why
        pick = [rows.loc[g] if g in rows.index else None for g in summary["group_id"]]
        series.append((
            name,
            [np.nan if r is None else r["estimate"] for r in pick],
            [np.nan if r is None else r["estimate_min"] for r in pick],
            [np.nan if r is None else r["estimate_max"] for r in pick],
            _BASELINE_COLOURS[i % len(_BASELINE_COLOURS)],
        ))
    groups = len(labels)
    width = 0.8 / len(series)
    fig = Figure(figsize=(min(13.0, max(6.0, 0.22 * groups * len(series) + 2.5)), 3.6))
    ax = fig.add_subplot()
    x = np.arange(groups)
    hollow: list[Any] = []  # legend entries of our hollow bars
    for j, (name, mid, lo, hi, colour) in enumerate(series):
        mid = np.asarray(mid, dtype=np.float64)
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        errors = np.vstack([np.nan_to_num(mid - lo), np.nan_to_num(hi - mid)])
        pos = x - 0.4 + width * (j + 0.5)
        bars = ax.bar(pos, mid, width, yerr=errors, color=colour, label=name, capsize=2,
                      error_kw={"lw": 0.8})
        if j == 0:
            hollow = _hatch_unsettled(bars.patches, summary)
    true = [np.nan if t is None or pd.isna(t) else float(t) for t in summary["true_dim"]]
    if any(not math.isnan(t) for t in true):
        ax.hlines(true, x - 0.45, x + 0.45, colors="black", lw=1.5, label="true")
    ax.set_xticks(x, labels, rotation=0 if max(map(len, labels), default=0) < 8 else 30,
                  fontsize=8)
    if axis_name(summary) != "group":
        ax.set_xlabel(axis_name(summary))
    ax.set_ylabel("intrinsic dimension")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    handles, names = ax.get_legend_handles_labels()
    if hollow:  # a legend entry drawn like our first bar would be hollow when that one is
        from matplotlib.patches import Patch

        handles[names.index("ours")] = Patch(color=_OURS, label="ours")
    handles += hollow
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("estimates: median over seeds (bars: range)", fontsize=9)
    fig.tight_layout()
    return fig


def _hatch_unsettled(bars: Sequence[Any], summary: pd.DataFrame) -> list[Any]:
    """Make our bars of the groups that have not settled hollow and hatched; returns a legend
    handle per kind shown."""
    from matplotlib.patches import Patch

    verdicts = summary["settled"] if "settled" in summary else [None] * len(summary)
    shown = []
    for bar, verdict in zip(bars, verdicts, strict=True):
        mark = settle_mark(verdict)
        if mark:
            bar.set_facecolor("white")
            bar.set_edgecolor(_OURS)
            bar.set_hatch(_HATCHES[mark])
            shown.append(mark)
    return [Patch(facecolor="white", edgecolor=_OURS, hatch=_HATCHES[mark],
                  label=f"ours ({mark})") for mark in dict.fromkeys(shown)]


def trajectory_figure(
    curves: pd.DataFrame, floor: float | None = None, top: int = 8, title: str = "",
    threshold: float | None = None,
) -> Figure:
    """A group's loss, top-``top`` eigenvalues and estimate over steps, one line per fit
    (the noise floor and, for the ``threshold`` rule, ``threshold * floor`` marked)."""
    fig = Figure(figsize=(9, 2.8))
    axes = fig.subplots(1, 3)
    for i, (fit_id, curve) in enumerate(curves.groupby("fit_id", sort=False)):
        curve = curve.sort_values("step")
        colour = f"C{i % 10}"
        steps = curve["step"].to_numpy()
        axes[0].plot(steps, curve["loss"], lw=1, color=colour, label=fit_id)
        spectra = [np.asarray(e, dtype=np.float64) for e in curve["eigenvalues"]]
        width = min((s.size for s in spectra), default=0)
        if width:
            stack = np.stack([s[:width] for s in spectra])[:, :top]
            low = (floor or 1e-6) * 1e-2
            for k in range(stack.shape[1]):
                axes[1].semilogy(steps, _positive(stack[:, k], low), lw=0.8, color=colour,
                                 alpha=0.9 - 0.6 * k / max(1, stack.shape[1] - 1))
        axes[2].step(steps, curve["estimate"].astype("float64"), where="post", lw=1,
                     color=colour)
    if floor:
        axes[1].axhline(floor, color="grey", ls=":", lw=1)
        if threshold:
            axes[1].axhline(threshold * floor, color="red", ls="--", lw=1)
    for ax, name in zip(axes, ("loss", f"top {top} eigenvalues", "estimate"), strict=True):
        ax.set_xlabel("step")
        ax.set_title(name, fontsize=9)
    axes[2].yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    known = curves["estimate"].astype("float64").dropna()
    if len(known):
        axes[2].set_ylim(known.min() - 0.5, known.max() + 0.5)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


_MARKERS = ("x", "+", "^", "v", "s", "D")  # one per classical estimator in scales_figure


def scales_figure(scales: pd.DataFrame, baselines: pd.DataFrame | None = None) -> Figure:
    """Dimension against the data-noise floor, one curve per family (``pipelines.analysis.scales``):
    the estimate at each floor (median over seeds, bars: range; a hollow marker where the
    group has not settled), the log-volume's finite-difference reading between neighbouring
    floors (dashed), the family's scale readout (in the legend) and each classical
    estimator's median over the family's groups, to the right of the coarsest floor."""
    fig = Figure(figsize=(8.5, 4.0))
    ax = fig.add_subplot()
    names = [] if baselines is None or baselines.empty else list(
        dict.fromkeys(baselines["estimator"]))
    right = float(scales["noise_floor"].max()) * 1.6
    for i, (family, part) in enumerate(scales.groupby("family", sort=False)):
        colour = f"C{i % 10}"
        part = part.sort_values("noise_floor")
        x = part["noise_floor"].to_numpy(dtype=np.float64)
        mid = part["estimate"].to_numpy(dtype=np.float64)
        lo = part["estimate_min"].to_numpy(dtype=np.float64)
        hi = part["estimate_max"].to_numpy(dtype=np.float64)
        label = family or "all"
        readout = part["id_scale"].iloc[0]
        if readout is not None and not pd.isna(readout):
            label += f" (across floors: {int(readout)})"
        ax.errorbar(x, mid, yerr=np.vstack([np.nan_to_num(mid - lo), np.nan_to_num(hi - mid)]),
                    color=colour, marker="o", lw=1.2, capsize=2, label=label,
                    markerfacecolor=colour)
        unsettled = np.array([settle_mark(v) != "" for v in part["settled"]])
        if unsettled.any():
            ax.plot(x[unsettled], mid[unsettled], "o", color=colour, markerfacecolor="white")
        steps = part.dropna(subset=["scale_dim"])
        if len(steps):
            ax.plot(steps["scale_at"], steps["scale_dim"], ls="--", lw=0.8, color=colour)
        for j, name in enumerate(names):
            mine = baselines[(baselines["estimator"] == name)
                             & baselines["group_id"].isin(list(part["group_id"]))]
            if mine["estimate"].notna().any():
                ax.plot([right], [float(mine["estimate"].median())], _MARKERS[j % len(_MARKERS)],
                        color=colour, ms=6)
    for j, name in enumerate(names):
        ax.plot([], [], _MARKERS[j % len(_MARKERS)], color="grey", label=name)
    true = scales["true_dim"].dropna().unique()
    if len(true) == 1:
        ax.axhline(float(true[0]), color="black", lw=1, ls=":", label="true")
    ax.set_xscale("log")
    drawn = scales[["estimate", "estimate_max", "scale_dim"]].to_numpy(dtype=np.float64)
    positive = drawn[np.isfinite(drawn) & (drawn > 0)]
    if positive.size and positive.max() > 10 * positive.min():
        # Images: the log-volume reads hundreds between fine floors, the threshold rule a
        # handful; on a linear axis the curves per floor would lie flat at the bottom.
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("data-noise floor σx")
    ax.set_ylabel("intrinsic dimension")
    ax.set_title("dimension across scales: each floor (o, open: unsettled), log-volume "
                 "between floors (dashed)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig
