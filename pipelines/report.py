"""The report of a survey: ``<out>/<name>/report/``, a self-contained folder readable offline.

``index.html`` (plain HTML, inline style, relative links only) with, per group, our estimate
(median [min-max] over seeds; marked "(unsettled)" wherever it appears when a fit of the group
had not settled, see ``pipelines.analysis.summary``), the
classical baselines on the same points and,
where known, the true dimension; a figure of all estimates; per group its fits' settling
figures, the spectra, the trajectories over steps and the data. Beside it:
``figures/*.png``, ``summary.csv``, ``baselines.csv`` and ``table.tex`` (the main table as
LaTeX, for a paper draft). ``build_report`` also writes ``summary.parquet`` and the
baselines cache, and logs the report and the summary to the survey's latest MLflow parent
run.
"""

from __future__ import annotations

import html
import json
import math
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines import plots
from pipelines.analysis.baselines import (
    DANCO_MAX_DIM,
    DEFAULT_ESTIMATORS,
    compute_baselines,
    read_baselines,
)
from pipelines.analysis.scales import SCALE_RULE, scale_rows, scales_table, write_scales
from pipelines.analysis.summary import (
    AnalysisError,
    curved_note,
    recompute_curves,
    settle_mark,
    summarize,
    summary_path,
    write_summary,
)
from pipelines.results.store import Store

__all__ = ["Report", "build_report", "log_to_mlflow", "table_rows", "write_html"]

REPORT_DIR = "report"
SCALES_METHOD = (
    "Each family (a group less its noise floor) read at each data-noise floor σx, and across "
    "all its floors at once: the log-volume log det(A Aᵀ + σ² I) of each fit's prior grows "
    "with log(σ² + σx²) at a rate of the number of directions the data do not use (D − d; "
    "mflow.scales), so its slope between neighbouring floors (dashed) is a dimension at that "
    "scale, and a fit of V = C + (D − d) log(s² + σ² + σx²) over all floors gives one "
    "dimension ('across floors', range over seeds), the noise scale s below which the data "
    "fill every direction, and the floors over which the slope holds it (within 1)."
)
_MAX_TRAJECTORY_FITS = 10  # fits drawn per trajectory figure


@dataclass
class Report:
    """What ``build_report`` made."""

    index: str  # where index.html is (a path on the store's filesystem)
    summary: pd.DataFrame
    baselines: pd.DataFrame
    mlflow_run_id: str | None = None  # the parent run the report was logged to
    warnings: list[str] = field(default_factory=list)


# -- formatting ------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float | np.floating):
        value = float(value)
        return str(int(value)) if value.is_integer() else f"{value:.{digits}f}"
    return str(value)


def _range(mid: Any, lo: Any, hi: Any, digits: int = 2) -> str:
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
        text += f" ± {float(spread):.1f}"
    return text + (" *" if curved_note(row.get("rank"), local, row["estimate"]) else "")


def table_rows(
    summary: pd.DataFrame, baselines: pd.DataFrame | None = None
) -> tuple[list[str], list[list[str]]]:
    """The main table as text: headers and one row per group (the console, HTML and LaTeX
    tables all use it)."""
    names = [] if baselines is None or baselines.empty else [
        name for name in dict.fromkeys(baselines["estimator"])
        if baselines.loc[baselines["estimator"] == name, "estimate"].notna().any()
    ]  # an estimator skipped or failed everywhere is left out (the group notes say why)
    # The rank and the local dimension (issue 16): shown when some group has them.
    two = [c for c in ("rank", "local_dim") if c in summary and summary[c].notna().any()]
    headers = [plots.axis_name(summary), "true", "ours", *(["rank", "local"] if two else []),
               "by seed", "settled", "ok/div/fail", "gap"]
    headers += names
    rows = []
    for row, label in zip(summary.to_dict("records"), plots.short_labels(summary), strict=True):
        per_seed = " ".join("·" if e is None or pd.isna(e) else str(int(e))
                            for e in (row["estimates"] if row["estimates"] is not None else []))
        cells = [
            label,
            _fmt(row["true_dim"]),
            _estimate(row),
            *([_fmt(row.get("rank")), _local(row)] if two else []),
            per_seed,
            f"{_fmt(row.get('settled_fits'))}/{row['ok']}",
            f"{row['ok']}/{row['diverged']}/{row['failed']}",
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


def _latex(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(text: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                     ("#", r"\#"), ("–", "--"), ("·", "--")):
            text = text.replace(a, b)
        return text

    keep = [i for i, h in enumerate(headers) if h not in ("by seed", "settled", "ok/div/fail")]
    lines = [r"\begin{tabular}{l" + "r" * (len(keep) - 1) + "}", r"\toprule"]
    lines.append(" & ".join(esc(headers[i]) for i in keep) + r" \\")
    lines.append(r"\midrule")
    for row in rows:
        lines.append(" & ".join(esc(row[i]) for i in keep) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _figure(value: Any) -> str:
    if value is None or pd.isna(value):
        return "–"
    return "∞" if math.isinf(value) else f"{float(value):.3g}"


def _fits_settling(row: Mapping[str, Any], fits: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
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


# -- figures ---------------------------------------------------------------------------------


def _save(fig, folder: Path, name: str) -> str:
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    (folder / "figures" / name).write_bytes(plots.png(fig))
    return f"figures/{name}"


def _data_figures(config: str, title: str, artifacts: Mapping[str, np.ndarray] | None):
    """The first data set a group's fits saw (scatter for 2-D/3-D, a grid for images) and,
    where that fit kept its artifacts, what its model made of them."""
    from mflow.config import FitSpec
    from mflow.datasets import load

    data = load(FitSpec.from_dict(json.loads(config)).data)
    figures = {}
    if data.is_image:
        figures["data"] = plots.image_grid_figure(data.x[:32], f"{title}: data")
    elif data.x.ndim == 2 and data.x.shape[1] in (2, 3):
        figures["data"] = plots.data_figure(data.x, f"{title}: data")
    if artifacts is not None:
        figures["model"] = plots.model_figure(data.x, artifacts, f"{title}: model (first fit)")
    return figures


ArtifactReader = Callable[[str], Mapping[str, np.ndarray] | None]


def _group_figures(row: Mapping[str, Any], fits: pd.DataFrame, curves: pd.DataFrame,
                   read_artifacts: ArtifactReader, folder: Path,
                   warn: Callable[[str], None]) -> dict[str, str]:
    gid = row["group_id"]
    group = fits.set_index("fit_id").loc[list(row["fit_ids"])]
    ok = group[group["status"] == "ok"]
    figures = {}
    spectra = [list(e) for e in ok["eigenvalues"] if e is not None]
    figures["spectrum"] = _save(
        plots.spectrum_figure(row, spectra, list(ok["seed"])), folder, f"{gid}-spectrum.png"
    )
    mine = curves[curves["fit_id"].isin(list(row["fit_ids"])[:_MAX_TRAJECTORY_FITS])]
    if len(mine):
        top = row["estimate_max"]
        top = 8 if top is None or pd.isna(top) else min(int(top) + 4, 40)
        threshold = row["threshold"] if row["rule"] == "threshold" else None
        threshold = None if threshold is None or pd.isna(threshold) else threshold
        figures["trajectory"] = _save(
            plots.trajectory_figure(mine, row["floor"], top=top, title=row["group"] or "all",
                                    threshold=threshold),
            folder, f"{gid}-trajectory.png",
        )
    first = ok.index[0] if len(ok) else None
    try:
        artifacts = read_artifacts(first) if first is not None else None
        drawn = _data_figures(group["config"].iloc[0], row["group"] or "all", artifacts)
    except Exception as exc:  # noqa: BLE001 - the report goes on without the data figures
        warn(f"{row['group']}: data not drawn ({type(exc).__name__}: {exc})")
        drawn = {}
    for name, fig in drawn.items():
        figures[name] = _save(fig, folder, f"{gid}-{name}.png")
    return figures


# -- the HTML --------------------------------------------------------------------------------

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
.meta { color: #666; font-size: 0.9em; }
.figs img { max-width: 100%; margin: 0.4em 0.4em 0.4em 0; vertical-align: top; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.note { color: #8a5a00; }
"""


def _table_html(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in rows
    )
    return f"<table>\n<tr>{head}</tr>\n{body}</table>\n"


def _method(summary: pd.DataFrame, fits: pd.DataFrame, baselines: pd.DataFrame,
            noise: str) -> str:
    rules = sorted({r for r in summary["rule"].dropna()})
    thresholds = sorted({t for t in summary["threshold"].dropna()})
    floors = sorted({f for f in summary["floor"].dropna()})
    steps = sorted({int(s) for s in fits["steps"].dropna()})
    parts = [
        "Each fit trains a volume-preserving normalizing flow <i>g</i> with a learnable "
        "degenerate Gaussian prior N(0, A Aᵀ) by the spread KL objective; the intrinsic "
        "dimension is read from the final spectrum of A Aᵀ.",
    ]
    if "threshold" in rules:
        factor = ", ".join(f"{t:g}" for t in thresholds) or "the configured factor"
        parts.append(f"Rule <code>threshold</code>: the number of eigenvalues above {factor} × "
                     "the noise floor σ² + σ<sub>x</sub>², where σ² is the spread-noise "
                     "variance and σ<sub>x</sub> the data-noise floor.")
    if "gap" in rules:
        parts.append("Rule <code>gap</code>: the position of the largest drop in "
                     "log(λ + floor), the floor appended.")
    if floors:
        parts.append("Noise floor: " + ", ".join(f"{f:.3g}" for f in floors) + ".")
    if steps:
        parts.append("Training steps: " + ", ".join(map(str, steps)) + ".")
    parts.append("<i>ours</i> is the median over seeds, [min–max] its range (<i>by seed</i>: "
                 "each seed's estimate, · for a fit that diverged or failed); <i>gap</i> the "
                 "median log-gap (nats) at each fit's cut.")
    parts.append("<i>rank</i>: the median rank of A A<sup>T</sup>, the flat dimensions the "
                 "flow needs; <i>local</i>: the median local dimension of the fit's codes in "
                 "those directions (<code>mflow.local</code>) ± its spread over points. "
                 "<i>ours</i> is the local dimension rounded, at most the rank. "
                 "<i>*</i>: ours is below the rank, the data need more flat dimensions than "
                 "they have locally: a curved or closed manifold (a sphere S<sup>d</sup> needs "
                 "d + 1).")
    parts.append("<i>settled</i>: the ok fits whose estimate had stopped moving when training "
                 "ended (the same estimate at the data-noise floor over the last logged steps, "
                 "the eigenvalues either side of the cut steady and clear of it; "
                 "<code>mflow.settle</code>). A group is settled when all its ok fits are; "
                 "otherwise its estimate is marked <i>(unsettled)</i>: it is where training "
                 "stopped, not an answer. <i>(not judged)</i>: fits recorded before the "
                 "criterion existed, or read again with a rule that moved their estimate.")
    if not baselines.empty:
        names = ", ".join(dict.fromkeys(baselines["estimator"]))
        where = ("without the training noise" if noise == "none" else
                 "with Gaussian noise at the data-noise floor added")
        parts.append(
            f"Baselines (scikit-dimension: {html.escape(names)}) run on the same points as the "
            f"fits (same subset, seed and preprocessing, {where}); one estimate per distinct "
            f"data set of a group, median [min–max]. DANCo is skipped above {DANCO_MAX_DIM} "
            "ambient dimensions."
        )
    return " ".join(parts)


def write_html(
    folder: Path,
    name: str,
    summary: pd.DataFrame,
    baselines: pd.DataFrame,
    fits: pd.DataFrame,
    curves: pd.DataFrame,
    *,
    description: str | None = None,
    noise: str = "none",
    warn: Callable[[str], None] = lambda message: None,
    read_artifacts: ArtifactReader = lambda fit_id: None,
    scales: pd.DataFrame | None = None,
) -> Path:
    """Write ``index.html``, its figures and tables into the local ``folder``;
    ``read_artifacts(fit_id)`` gives a fit's kept samples and projection (or ``None``);
    ``scales`` (``pipelines.analysis.scales.scales_table``) adds the section across noise floors."""
    folder.mkdir(parents=True, exist_ok=True)
    headers, rows = table_rows(summary, baselines)
    summary.to_csv(folder / "summary.csv", index=False)
    if not baselines.empty:
        baselines.drop(columns=["key"]).to_csv(folder / "baselines.csv", index=False)
    latex = _latex(headers, rows)
    (folder / "table.tex").write_text(latex)
    overview = _save(plots.estimates_figure(summary, baselines), folder, "estimates.png")
    counts = {k: int(summary[k].sum()) for k in ("fits", "ok", "diverged", "failed")}
    settled = sum(settle_mark(v) == "" for v in summary["settled"])
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(name)}: intrinsic dimension</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(name)}: intrinsic dimension</h1>",
    ]
    if description:
        out.append(f"<p>{html.escape(description)}</p>")
    out.append(
        f'<p class="meta">{len(summary)} groups, {counts["fits"]} fits: {counts["ok"]} ok, '
        f'{counts["diverged"]} diverged, {counts["failed"]} failed; {settled} of '
        f'{len(summary)} groups settled. Generated {now}.</p>'
    )
    out.append(f"<h2>Estimates</h2>\n<p>{_method(summary, fits, baselines, noise)}</p>")
    out.append(_table_html(headers, rows))
    out.append(f'<div class="figs"><img src="{overview}" alt="estimates by group"></div>')
    if scales is not None and len(scales):
        figure = _save(plots.scales_figure(scales, baselines), folder, "scales.png")
        out.append("<h2>Dimension across scales</h2>\n<p>" + html.escape(SCALES_METHOD) + "</p>")
        out.append(_table_html(*scale_rows(scales)))
        out.append(f'<div class="figs"><img src="{figure}" alt="dimension across scales"></div>')
    out.append(
        '<p>Tables: <a href="summary.csv">summary.csv</a>'
        + (' · <a href="baselines.csv">baselines.csv</a>' if not baselines.empty else "")
        + ' · <a href="table.tex">table.tex</a> (LaTeX, booktabs):</p>'
    )
    out.append(f"<pre>{html.escape(latex)}</pre>")
    out.append("<h2>Groups</h2>")
    for row, label in zip(summary.to_dict("records"), plots.short_labels(summary),
                          strict=True):
        figures = _group_figures(row, fits, curves, read_artifacts, folder, warn)
        out.append(f'<h3 id="{html.escape(row["group_id"])}">{html.escape(row["group"] or label)}'
                   "</h3>")
        facts = [
            ("estimate", _estimate(row)),
            ("settled", f"{_fmt(row.get('settled_fits'))} of {row['ok']} ok fits"),
            ("flat dimensions (rank of A Aᵀ)", _fmt(row.get("rank"))),
            ("local dimension of the codes", _local(row).removesuffix(" *")),
            *([("curved or closed", note)]
              if (note := curved_note(row.get("rank"), row.get("local_dim"), row["estimate"]))
              else []),
            ("true dimension", _fmt(row["true_dim"])),
            ("ambient dimension", _fmt(row["ambient_dim"])),
            ("points per fit", _fmt(row["n"])),
            ("fits ok / diverged / failed", f"{row['ok']} / {row['diverged']} / {row['failed']}"),
            ("rule", f"{row['rule']}" + (f" × {row['threshold']:g}"
                                         if row["threshold"] is not None
                                         and not pd.isna(row["threshold"]) else "")),
            ("noise floor σ² + σx²", _fmt(row["floor"], 6)),
            ("log-gap at the cut", _fmt(row["gap"], 2)),
        ]
        mine = baselines[baselines["group_id"] == row["group_id"]] if len(baselines) else None
        if mine is not None:
            for b in mine.to_dict("records"):
                value = _range(b["estimate"], b["estimate_min"], b["estimate_max"])
                value += f" ({b['wall_s']:.2f} s)"
                if isinstance(b["note"], str) and b["note"]:
                    value += f" — {b['note']}"
                facts.append((b["estimator"], value))
        out.append(_table_html(["", ""], facts).replace("<tr><th></th><th></th></tr>\n", ""))
        out.append(_table_html(*_fits_settling(row, fits)))
        images = "".join(
            f'<img src="{path}" alt="{html.escape(kind)}">' for kind, path in figures.items()
        )
        out.append(f'<div class="figs">{images}</div>')
    out.append(
        '<h2>Reading the tables in Python</h2><pre>from pipelines.results import load\n'
        f'fits, curves, summary, baselines = load({name!r}, out=...)</pre>'
    )
    out.append("</body></html>")
    index = folder / "index.html"
    index.write_text("\n".join(out) + "\n", encoding="utf-8")
    return index


# -- MLflow ----------------------------------------------------------------------------------


def log_to_mlflow(uri: str, name: str, report_dir: Path, summary_file: Path) -> str | None:
    """Log the report folder (as ``report/``) and ``summary.parquet`` to the newest parent run
    of survey ``name``; returns its id, or ``None`` when the survey has no run there."""
    from mlflow import MlflowClient

    prefix = "sqlite:///"
    if uri.startswith(prefix) and not Path(uri[len(prefix):]).is_file():
        return None  # no such store: do not create one just to find no run in it
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.kind = 'survey-run'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    if not runs:
        return None
    run_id = runs[0].info.run_id
    client.log_artifacts(run_id, str(report_dir), REPORT_DIR)
    client.log_artifact(run_id, str(summary_file))
    client.set_tag(run_id, "report", "report/index.html")
    return run_id


# -- the whole report ------------------------------------------------------------------------


def _upload(store: Store, local: Path) -> str:
    """Put the local report folder at ``<root>/report/``; returns its ``index.html``'s path.

    The whole folder is first copied beside it under a temporary name (``.report.<hex>.tmp``),
    then swapped in, so a copy that fails leaves the old report as it was. On a local disk the
    swap is two renames; an object store cannot rename a folder, so there the old files are
    replaced by server-side copies of the new ones (``index.html`` last).
    """
    import pyarrow.fs as pafs

    fs, target = store.fs, f"{store.root}/{REPORT_DIR}"
    staging = f"{store.root}/.{REPORT_DIR}.{uuid.uuid4().hex}.tmp"
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    try:
        for name in files:
            fs.create_dir(f"{staging}/{name}".rsplit("/", 1)[0], recursive=True)
            with fs.open_output_stream(f"{staging}/{name}") as f:
                f.write((local / name).read_bytes())
        if isinstance(fs, pafs.LocalFileSystem):
            _rename_in(fs, staging, target)
        else:
            _copy_in(fs, staging, target, sorted(files, key=lambda n: n == "index.html"))
    finally:
        if fs.get_file_info(staging).type != pafs.FileType.NotFound:
            fs.delete_dir(staging)
    return f"{target}/index.html"


def _rename_in(fs, staging: str, target: str) -> None:
    """Replace the folder ``target`` by ``staging``: the old one is renamed away first and put
    back if the new one cannot be renamed in."""
    import pyarrow.fs as pafs

    old = f"{staging}.old"
    replacing = fs.get_file_info(target).type != pafs.FileType.NotFound
    if replacing:
        fs.move(target, old)
    try:
        fs.move(staging, target)
    except BaseException:
        if replacing:
            fs.move(old, target)
        raise
    if replacing:
        fs.delete_dir(old)


def _copy_in(fs, staging: str, target: str, files: Sequence[str]) -> None:
    """Replace the contents of ``target`` by copies of ``files`` under ``staging``."""
    import pyarrow.fs as pafs

    if fs.get_file_info(target).type != pafs.FileType.NotFound:
        fs.delete_dir_contents(target)
    for name in files:
        fs.create_dir(f"{target}/{name}".rsplit("/", 1)[0], recursive=True)
        fs.copy_file(f"{staging}/{name}", f"{target}/{name}")


def build_report(
    store: Store,
    *,
    fit_ids: Sequence[str] | None = None,
    description: str | None = None,
    rule: str | None = None,
    threshold: float | None = None,
    group_by: Sequence[str] | None = None,
    baselines: bool = True,
    estimators: Sequence[str] = DEFAULT_ESTIMATORS,
    noise: str = "none",
    use_ray: bool = True,
    address: str | None = None,
    tracking_uri: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> Report:
    """Summarise, run the baselines (cached), draw, and write ``<out>/<name>/report/``.

    Args:
        store: the survey's store.
        fit_ids: the fits of the survey's job (the plan), in grid order; ``None``: all stored.
        description: a line under the title (the job's description).
        rule, threshold, group_by: see ``pipelines.analysis.summary.summarize``.
        baselines: run the classical estimators (else only cached ones are shown).
        estimators, noise: see ``pipelines.analysis.baselines.compute_baselines``.
        use_ray, address: run the baselines as Ray tasks, on this cluster.
        tracking_uri: log the report and the summary to the survey's MLflow parent run.
        warn: told about what went wrong without stopping the report.
    """
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if warn is not None:
            warn(message)

    fits = store.read_fits()
    if fit_ids is not None:
        fits = fits[fits["fit_id"].isin(set(fit_ids))]
    if fits.empty:
        raise AnalysisError(f"{store.survey}: no fits stored under {store.root}")
    summary = summarize(fits, rule=rule, threshold=threshold, group_by=group_by, fit_ids=fit_ids)
    write_summary(store, summary)
    per_floor = summary if rule != SCALE_RULE else summarize(fits, group_by=group_by,
                                                             fit_ids=fit_ids)
    scales = scales_table(per_floor)
    if len(scales):
        write_scales(store, scales)
    if baselines:
        table = compute_baselines(store, fits, summary, estimators=estimators, noise=noise,
                                  use_ray=use_ray, address=address)
    else:
        table = read_baselines(store, list(summary["group_id"]))
    curves = store.read_curves()
    curves = recompute_curves(curves[curves["fit_id"].isin(set(fits["fit_id"]))], fits, rule,
                              threshold)
    with tempfile.TemporaryDirectory(prefix="mflow-report-") as tmp:
        local = Path(tmp) / REPORT_DIR
        write_html(local, store.survey, summary, table, fits, curves, description=description,
                   noise=noise, warn=note, read_artifacts=store.read_artifacts, scales=scales)
        index = _upload(store, local)
        run_id = None
        if tracking_uri is not None:
            summary_file = Path(tmp) / "summary.parquet"
            with store.fs.open_input_stream(summary_path(store)) as f:
                summary_file.write_bytes(f.read())
            try:
                run_id = log_to_mlflow(tracking_uri, store.survey, local, summary_file)
                if run_id is None:
                    note(f"MLflow at {tracking_uri}: no survey run of {store.survey!r}; the "
                         "report is not logged there")
            except Exception as exc:  # noqa: BLE001 - the report on disk is what matters
                note(f"MLflow at {tracking_uri}: report not logged ({type(exc).__name__}: "
                     f"{exc})")
    return Report(index=index, summary=summary, baselines=table, mlflow_run_id=run_id,
                  warnings=notes)

