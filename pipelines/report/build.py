"""The report of a survey: ``<out>/<name>/report/``, a self-contained folder readable offline.

``index.html`` (plain HTML, inline style, relative links only) with, per group, our estimate
(median [min-max] over seeds; marked "(unsettled)" wherever it appears when a fit of the group
had not settled, see ``pipelines.analysis.summary``), the classical baselines on the same
points and, where known, the true dimension; a figure of all estimates; per group its fits'
settling figures, the spectra, the trajectories over steps and the data. Beside it:
``figures/*.png``, ``summary.csv``, ``baselines.csv`` and ``table.tex`` (the main table as
LaTeX, for a paper draft). ``build_report`` also writes ``summary.parquet`` and the
baselines cache, and logs the report and the summary to the survey's latest MLflow parent
run.

This module orchestrates: it summarises, runs the baselines, has the folder written
(``pipelines.report.page``: the Jinja2 templates in ``pipelines/report/templates/``, the tables'
text from ``pipelines.report.tables``, the figures from ``pipelines.report.figures``), puts it
in place whole and logs it to MLflow.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipelines.analysis.baselines import DEFAULT_ESTIMATORS, compute_baselines, read_baselines
from pipelines.analysis.readouts import AnalysisError, recompute_curves
from pipelines.analysis.scales import SCALE_RULE, scales_table
from pipelines.analysis.stored import summary_path, write_scales, write_summary
from pipelines.analysis.summary import summarize
from pipelines.job import masked
from pipelines.report.page import write_html
from pipelines.report.tables import table_rows
from pipelines.results.store import Store

# table_rows and write_html live in tables / page; named here too, where
# `survey` and the tests have always found them.
__all__ = ["Report", "build_report", "log_to_mlflow", "table_rows", "write_html"]

REPORT_DIR = "report"


@dataclass
class Report:
    """What ``build_report`` made."""

    index: str  # where index.html is (a path on the store's filesystem)
    summary: pd.DataFrame
    baselines: pd.DataFrame
    mlflow_run_id: str | None = None  # the parent run the report was logged to
    warnings: list[str] = field(default_factory=list)


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
                    note(masked(f"MLflow at {tracking_uri}: no survey run of "
                                f"{store.survey!r}; the report is not logged there"))
            except Exception as exc:  # noqa: BLE001 - the report on disk is what matters
                note(masked(f"MLflow at {tracking_uri}: report not logged "
                            f"({type(exc).__name__}: {exc})"))
    return Report(index=index, summary=summary, baselines=table, mlflow_run_id=run_id,
                  warnings=notes)

