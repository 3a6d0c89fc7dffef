"""The report's page: ``index.html`` and ``table.tex`` rendered from the Jinja2 templates in
``pipelines/report/templates/``, their tables written by pandas, beside the figures and the
CSV tables.

The HTML template autoescapes everything it is given; tables come in already escaped by
``DataFrame.to_html``. LaTeX cells are escaped by pandas' ``Styler`` (``_``, ``&``, ``%``, ...),
with en dashes written ``--``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from pipelines.analysis.baselines import DANCO_MAX_DIM
from pipelines.analysis.scales import scale_rows
from pipelines.analysis.summary import settle_mark
from pipelines.report import plots
from pipelines.report.figures import ArtifactReader, group_figures, save
from pipelines.report.tables import fits_settling, group_facts, method_facts, table_rows

__all__ = ["html_table", "latex_escape", "latex_table", "write_html"]

# LaTeX's special characters as text (the same ones pandas escapes in the table's cells).
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
          "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
          "^": r"\textasciicircum{}"}
# Columns of the main table that the LaTeX table leaves out (per-seed detail for the page).
PAGE_ONLY = ("by seed", "settled", "ok/div/fail")


def latex_escape(text: object) -> str:
    r"""``text`` with LaTeX's special characters escaped (the templates' ``latex`` filter).

    Example:
        >>> latex_escape("two_moons: 50% & more")
        'two\\_moons: 50\\% \\& more'
    """
    return "".join(_LATEX.get(c, c) for c in str(text))


@functools.cache
def _templates() -> jinja2.Environment:
    """The templates shipped with ``pipelines`` (package data): ``*.html.j2`` autoescaped,
    a ``latex`` filter for the others, an undefined name an error rather than an empty
    string."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipelines.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["latex"] = latex_escape
    return env


def html_table(headers: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> Markup:
    """Rows of text as an HTML table (``DataFrame.to_html``, cells escaped); ``headers=None``:
    no header row."""
    width = len(rows[0]) if rows else len(headers or ())
    frame = pd.DataFrame(list(rows), columns=list(headers) if headers else range(width))
    return Markup(frame.to_html(index=False, header=headers is not None, border=0))


def latex_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The main table as a booktabs ``tabular`` (``Styler.to_latex``), without the
    ``PAGE_ONLY`` columns; special characters escaped, en dashes as ``--``."""
    keep = [i for i, h in enumerate(headers) if h not in PAGE_ONLY]
    frame = pd.DataFrame([[row[i] for i in keep] for row in rows],
                         columns=[headers[i] for i in keep])

    def dashes(text: str) -> str:  # after pandas' escaping: "–" and "·" mean a missing value
        return text.replace("–", "--").replace("·", "--")

    styler = (frame.style.hide(axis="index")
              .format(dashes, escape="latex").format_index(dashes, escape="latex", axis=1))
    return styler.to_latex(hrules=True, column_format="l" + "r" * (len(keep) - 1))


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
    latex = _templates().get_template("report.tex.j2").render(
        name=name, tabular=latex_table(headers, rows))
    (folder / "table.tex").write_text(latex, encoding="utf-8")
    overview = save(plots.estimates_figure(summary, baselines), folder, "estimates.png")
    scaled = scales is not None and len(scales) > 0
    scales_figure = save(plots.scales_figure(scales, baselines), folder, "scales.png") \
        if scaled else None
    groups = []
    for row, label in zip(summary.to_dict("records"), plots.short_labels(summary), strict=True):
        groups.append({
            "id": row["group_id"],
            "title": row["group"] or label,
            "facts": html_table(None, group_facts(row, baselines)),
            "fits": html_table(*fits_settling(row, fits)),
            "figures": group_figures(row, fits, curves, read_artifacts, folder, warn),
        })
    page = _templates().get_template("report.html.j2").render(
        name=name,
        description=description,
        counts={k: int(summary[k].sum()) for k in ("fits", "ok", "diverged", "failed")},
        groups_total=len(summary),
        settled=sum(settle_mark(v) == "" for v in summary["settled"]),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        method=method_facts(summary, fits, baselines, noise),
        danco_max_dim=DANCO_MAX_DIM,
        estimates=html_table(headers, rows),
        overview=overview,
        scales=html_table(*scale_rows(scales)) if scaled else None,
        scales_figure=scales_figure,
        has_baselines=not baselines.empty,
        latex=latex,
        groups=groups,
    )
    index = folder / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
