"""The ``survey`` command: run, validate and inspect intrinsic-dimension surveys.

    survey run JOB.yaml [--out DIR] [--tracking-uri URI] [--address ADDR] [--set key.path=value]
    survey validate JOB.yaml [--set key.path=value] [--fits]
    survey status NAME|JOB.yaml [--out DIR] [--set key.path=value]
    survey sync-mlflow NAME|JOB.yaml [--out DIR] [--tracking-uri URI] [--set key.path=value]
    survey analyze NAME|JOB.yaml [--out DIR] [--rule RULE] [--threshold X] [--group-by AXES]
    survey report NAME|JOB.yaml [--out DIR] [--tracking-uri URI] [--address ADDR] [--set ...]
    survey submit JOB.yaml --address http://HEAD:8265 --out SHARED --tracking-uri URI [--set ...]
    survey export JOB.yaml -o PLAN.json [--out DIR] [--set ...]     (then python -m mflow.batch)
    survey import JOB.yaml BATCH_OUT [--out DIR] [--tracking-uri URI] [--set ...]

Defaults: results under ``$MFLOW_RESULTS`` or ``./results``; MLflow at ``$MLFLOW_TRACKING_URI``
or ``sqlite:///mlflow.db`` (in the working directory); a local Ray sized to this machine unless
``--address`` names a cluster. Bad input prints one line and exits with code 2; a survey with
failed fits exits 1; an interrupted one 130 (run the same command again to resume);
``sync-mlflow`` exits 1 when MLflow cannot be reached.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from pipelines.execution.survey import Reporter
from pipelines.job import Fit, Job, JobError, check_data, count, load_job, plan
from pipelines.results import default_out, is_job_file

__all__ = ["main"]

EXIT_BAD_INPUT = 2
EXIT_FAILED_FITS = 1
EXIT_INTERRUPTED = 130


def _default_tracking() -> str:
    from pipelines.results.tracking import DEFAULT_TRACKING_URI

    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="survey", description="Intrinsic-dimension surveys with manifold flows on Ray."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_set(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
            help="override a field of the job file (value parsed as YAML); repeatable",
        )

    def with_store(p: argparse.ArgumentParser, tracking: bool = True) -> None:
        p.add_argument("--out", default=None, help="results folder or URI (default: "
                       "$MFLOW_RESULTS or ./results)")
        if tracking:
            p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: "
                           "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")

    run = commands.add_parser("run", help="run a survey's fits that are not done yet")
    run.add_argument("job", metavar="JOB.yaml")
    with_store(run)
    run.add_argument("--address", default=None, help="join this Ray cluster (default: start "
                     "a local Ray)")
    run.add_argument("--no-retry-failed", dest="retry_failed", action="store_false",
                     help="skip fits stored as failed or diverged (default: run them again)")
    with_set(run)

    validate = commands.add_parser("validate", help="check a job file and count its fits")
    validate.add_argument("job", metavar="JOB.yaml")
    validate.add_argument("--fits", action="store_true", help="list every fit id")
    with_set(validate)

    status = commands.add_parser("status", help="count a survey's fits by status")
    status.add_argument("target", metavar="NAME|JOB.yaml")
    with_store(status, tracking=False)
    with_set(status)

    sub = commands.add_parser(
        "submit", help="run a survey on a Ray cluster through the Ray Jobs API"
    )
    sub.add_argument("job", metavar="JOB.yaml")
    sub.add_argument("--address", required=True, help="the cluster's Jobs API, e.g. "
                     "http://127.0.0.1:8265 through `ray dashboard cluster.yaml`")
    sub.add_argument("--out", required=True, help="shared results: an absolute NFS path or "
                     "s3://...")
    sub.add_argument("--tracking-uri", required=True, help="the cluster's MLflow server, e.g. "
                     "http://127.0.0.1:5000 on the head")
    with_set(sub)

    sync = commands.add_parser(
        "sync-mlflow", help="record in MLflow the stored fits it lacks (from Parquet)"
    )
    sync.add_argument("target", metavar="NAME|JOB.yaml")
    with_store(sync)
    with_set(sync)

    export = commands.add_parser(
        "export", help="write the plan of fits not yet done, for `python -m mflow.batch`"
    )
    export.add_argument("job", metavar="JOB.yaml")
    export.add_argument("-o", "--output", required=True, metavar="PLAN.json")
    with_store(export, tracking=False)
    with_set(export)

    imp = commands.add_parser(
        "import", help="record the results of `python -m mflow.batch` as fits of a job"
    )
    imp.add_argument("job", metavar="JOB.yaml")
    imp.add_argument("folder", metavar="BATCH_OUT", help="the folder mflow.batch wrote")
    with_store(imp)
    with_set(imp)

    def with_analysis(p: argparse.ArgumentParser) -> None:
        p.add_argument("--rule", default=None, help="read every stored spectrum again with "
                       "this readout rule (threshold or gap), or 'scale': one estimate per "
                       "group across its noise floors; default: each fit's own")
        p.add_argument("--threshold", type=float, default=None, help="the threshold rule's "
                       "factor (default: each fit's configured one)")
        p.add_argument("--group-by", default=None, metavar="AXIS,AXIS", help="grid axes to "
                       "group fits by (default: every axis but the seed; '' pools all)")

    analyze = commands.add_parser(
        "analyze", help="recompute summary.parquet from the stored spectra (no refit)"
    )
    analyze.add_argument("target", metavar="NAME|JOB.yaml")
    with_store(analyze, tracking=False)
    with_analysis(analyze)
    with_set(analyze)

    report = commands.add_parser(
        "report", help="write <out>/NAME/report/index.html: estimates, baselines, plots"
    )
    report.add_argument("target", metavar="NAME|JOB.yaml")
    with_store(report)
    report.add_argument("--address", default=None, help="run the baselines on this Ray "
                        "cluster (default: a local Ray)")
    with_analysis(report)
    report.add_argument("--estimators", default="TwoNN,MLE,lPCA,DANCo", metavar="NAME,NAME",
                        help="classical estimators (default: %(default)s)")
    report.add_argument("--baseline-noise", choices=("none", "floor"), default="none",
                        help="add the fits' data-noise floor to the baselines' points")
    report.add_argument("--no-baselines", dest="baselines", action="store_false",
                        help="run no classical estimator (cached ones are still shown)")
    with_set(report)
    return parser


# -- formatting ------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _values(labels: Sequence[Any], limit: int = 12) -> str:
    shown = ", ".join(_fmt(v) if not isinstance(v, list) else str(v) for v in labels[:limit])
    return shown + (f", ... ({len(labels) - limit} more)" if len(labels) > limit else "")


def _describe(job: Job, console: Console) -> None:
    n = count(job)
    console.print(f"[bold]{job.name}[/bold]: {n} fit{'s' if n != 1 else ''}")
    for axis in job.axes:
        console.print(f"  {axis.name} ({len(axis.labels)}): {_values(axis.labels)}")
    r = job.resources
    console.print(
        f"  resources: cpu {_fmt(r.cpu)}, gpu {_fmt(r.gpu)}, pack {r.pack}, retries "
        f"{r.retries}, max_concurrent {r.max_concurrent or 'as the cluster holds'}"
    )


class _ProgressReporter(Reporter):
    """Draws the progress bar over the fits of a survey run (done, running, failed, ETA)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.running: set[str] = set()
        self.failed = 0
        self.diverged = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("running {task.fields[running]}"),
            TextColumn("failed {task.fields[failed]}"),
            TextColumn("diverged {task.fields[diverged]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = None

    def planned(self, total: int, pending: int) -> None:
        done = total - pending
        self.console.print(f"{total} fits: {done} done before, {pending} to run")
        if pending:
            self.progress.start()
            self.task = self.progress.add_task(
                "fits", total=pending, running=0, failed=0, diverged=0
            )

    def _update(self, advance: int = 0) -> None:
        if self.task is not None:
            self.progress.update(
                self.task, advance=advance, running=len(self.running), failed=self.failed,
                diverged=self.diverged,
            )

    def started(self, fit: Fit) -> None:
        self.running.add(fit.fit_id)
        self._update()

    def retrying(self, fit: Fit, error: str, attempt: int) -> None:
        self.running.discard(fit.fit_id)
        self.console.print(f"[yellow]{fit.fit_id}[/yellow] failed (try {attempt}): {error}; "
                           "restarting from its last checkpoint")
        self._update()

    def ended(self, fit: Fit, status: str, estimate: int | None, error: str | None) -> None:
        self.running.discard(fit.fit_id)
        if status == "failed":
            self.failed += 1
        elif status == "diverged":
            self.diverged += 1
        if status != "ok":
            self.console.print(f"[red]{fit.fit_id}[/red] {status}: {error}")
        self._update(advance=1)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}")

    def stop(self) -> None:
        if self.task is not None:
            self.progress.stop()


# -- commands --------------------------------------------------------------------------------


def _cmd_validate(args: argparse.Namespace, console: Console) -> int:
    job = load_job(args.job, args.overrides)
    fits = plan(job)
    check_data(fits)
    _describe(job, console)
    if args.fits:
        for fit in fits:
            axes = " ".join(f"{k}={_fmt(v)}" for k, v in fit.axes.items())
            console.print(f"  {fit.fit_id}  {axes}", highlight=False)
    return 0


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from pipelines.analysis.summary import summarize
    from pipelines.execution.survey import run_survey
    from pipelines.results.store import Store
    from pipelines.results.tracking import describe

    job = load_job(args.job, args.overrides)
    fits = plan(job)
    check_data(fits)
    out = args.out or default_out()
    tracking = args.tracking_uri or _default_tracking()
    store = Store(out, job.name)
    console.print(f"[bold]{job.name}[/bold]: results in {store.root}, MLflow at {tracking}",
                  highlight=False)
    reporter = _ProgressReporter(console)
    try:
        outcome = run_survey(
            job, out, tracking, address=args.address, retry_failed=args.retry_failed,
            reporter=reporter,
        )
    finally:
        reporter.stop()
    frame = summarize(store.read_fits(), fit_ids=[fit.fit_id for fit in fits],
                      **job.analysis.options())
    if len(frame):
        console.print(_estimates_table(f"{job.name}: estimated dimension", frame, None))
    counts = _counts_line(store, fits)
    console.print(f"{job.name}: {counts}", highlight=False)
    _print_not_ok(store, fits, console)
    _print_untracked(store, fits, job.name, out, tracking, console)
    console.print(f"fits table: pandas.read_parquet({store.fits_dir!r}); MLflow: "
                  f"{describe(tracking)}", highlight=False, soft_wrap=True)
    if outcome.interrupted:
        console.print(f"[yellow]interrupted[/yellow]: {outcome.missing} fits not done; run the "
                      "same command again to resume")
        return EXIT_INTERRUPTED
    statuses = store.statuses()
    if any(statuses.get(fit.fit_id) == "failed" for fit in fits):
        return EXIT_FAILED_FITS
    return 0


def _counts_line(store, fits: Sequence[Fit] | None) -> str:
    from pipelines.execution.survey import status_counts

    counts = status_counts(store, fits)
    order = ["ok", "diverged", "failed", "pending"]
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    parts += [f"{v} {k}" for k, v in sorted(counts.items()) if k not in order]
    total = sum(counts.values())
    return f"{total} fits" + (": " + ", ".join(parts) if parts else "")


def _print_not_ok(store, fits: Sequence[Fit], console: Console, limit: int = 20) -> None:
    """List the survey's fits that diverged or failed, with why (the step, for divergence)."""
    planned = {fit.fit_id for fit in fits}
    rows = [r for r in store.read_fits().to_dict("records")
            if r["fit_id"] in planned and r["status"] != "ok"]
    for status in ("diverged", "failed"):
        some = [r for r in rows if r["status"] == status]
        if not some:
            continue
        console.print(f"[red]{status}[/red] ({len(some)}):")
        for row in some[:limit]:
            console.print(f"  {row['fit_id']}: {row['error']}", highlight=False)
        if len(some) > limit:
            console.print(f"  ... and {len(some) - limit} more (see the fits table)")


def _print_untracked(store, fits: Sequence[Fit], name: str, out: str, tracking: str,
                     console: Console) -> None:
    """Say how to add to MLflow the fits it missed (it was unreachable for a while)."""
    planned = {fit.fit_id for fit in fits}
    table = store.read_fits()
    missing = int(table[table["fit_id"].isin(planned)]["mlflow_run_id"].isna().sum())
    if missing:
        console.print(
            f"[yellow]warning:[/yellow] {missing} fits have no MLflow run (MLflow was "
            f"unreachable); record them later with: survey sync-mlflow {name} --out {out} "
            f"--tracking-uri {tracking}", highlight=False,
        )


def _cmd_sync(args: argparse.Namespace, console: Console) -> int:
    from pipelines.results.store import Store
    from pipelines.results.tracking import backfill, describe

    out = args.out or default_out()
    tracking = args.tracking_uri or _default_tracking()
    if is_job_file(args.target):
        name = load_job(args.target, args.overrides).name
    elif args.overrides:
        raise JobError("--set: needs a job file, not a survey name")
    else:
        name = args.target
    store = Store(out, name)
    if not store.exists():
        raise JobError(f"{name}: no survey of that name under {out}")
    try:
        done = backfill(store, tracking)
    except Exception as exc:  # noqa: BLE001 - MLflow's errors, told in one line
        line = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        print(f"error: MLflow at {tracking}: {line}; nothing more recorded, run it again "
              "when MLflow is back", file=sys.stderr)
        return EXIT_FAILED_FITS
    removed = f", {done.removed} duplicate runs deleted" if done.removed else ""
    console.print(f"{name}: {done.fits} fits, {done.present} already in MLflow, "
                  f"{done.added} recorded now{removed}; MLflow: {describe(tracking)}",
                  highlight=False)
    return 0


def _cmd_status(args: argparse.Namespace, console: Console) -> int:
    from pipelines.results.store import Store

    out = args.out or default_out()
    if is_job_file(args.target):
        job = load_job(args.target, args.overrides)
        fits = plan(job)
        store = Store(out, job.name)
        store.adopt_legacy(fits)
        console.print(f"{job.name}: {_counts_line(store, fits)}", highlight=False)
        return 0
    if args.overrides:
        raise JobError("--set: needs a job file, not a survey name")
    store = Store(out, args.target)
    if not store.exists():
        raise JobError(f"{args.target}: no survey of that name under {out}")
    console.print(f"{args.target}: {_counts_line(store, None)}", highlight=False)
    return 0


def _analysis_target(args: argparse.Namespace):
    """The store, the planned fit ids (a job file) or None (a name), the job's description,
    and the summary options the job file sets (its ``analysis`` block)."""
    from pipelines.results.store import Store

    out = args.out or default_out()
    if is_job_file(args.target):
        job = load_job(args.target, args.overrides)
        store, fits = Store(out, job.name), plan(job)
        store.adopt_legacy(fits)
        fit_ids, description = [fit.fit_id for fit in fits], job.description
        defaults = job.analysis.options()
    elif args.overrides:
        raise JobError("--set: needs a job file, not a survey name")
    else:
        store, fit_ids, description, defaults = Store(out, args.target), None, None, {}
    if not store.exists():
        raise JobError(f"{store.survey}: no fits stored under {out}")
    if fit_ids is not None and not set(fit_ids) & set(store.statuses()):
        raise JobError(
            f"{args.target}: none of its {len(fit_ids)} fits is stored under {out} (did the "
            f"job file, --set or a default change since they ran?); give the survey name, "
            f"{store.survey}, to use every stored fit"
        )
    return store, fit_ids, description, defaults


def _analysis_options(args: argparse.Namespace, defaults: dict[str, Any]) -> dict[str, Any]:
    """The summary options: the flags given, else the job file's, else the defaults."""
    group_by = defaults.get("group_by")
    if args.group_by is not None:
        group_by = [a.strip() for a in args.group_by.split(",") if a.strip()]
    return {"rule": args.rule, "threshold": args.threshold, "group_by": group_by}


def _estimates_table(title: str, summary, baselines) -> Table:
    from pipelines.report import table_rows

    headers, rows = table_rows(summary, baselines)
    table = Table(title=title, title_justify="left")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*row)
    return table


def _cmd_analyze(args: argparse.Namespace, console: Console) -> int:
    from pipelines.analysis.baselines import read_baselines
    from pipelines.analysis.scales import SCALE_RULE, update_scales
    from pipelines.analysis.summary import AnalysisError, summarize, summary_path, write_summary

    store, fit_ids, _, defaults = _analysis_target(args)
    options = _analysis_options(args, defaults)
    fits = store.read_fits()
    try:
        summary = summarize(fits, fit_ids=fit_ids, **options)
        per_floor = summary if options["rule"] != SCALE_RULE else summarize(
            fits, fit_ids=fit_ids, group_by=options["group_by"])
    except AnalysisError as exc:
        raise JobError(str(exc)) from None
    write_summary(store, summary)
    scales = update_scales(store, per_floor)
    baselines = read_baselines(store, list(summary["group_id"]))
    console.print(_estimates_table(f"{store.survey}: estimated dimension", summary, baselines))
    console.print(f"summary.parquet: {summary_path(store)}", highlight=False)
    if scales is not None:
        console.print(f"scales.parquet (the estimate at each noise floor): {scales}",
                      highlight=False)
    return 0


def _cmd_report(args: argparse.Namespace, console: Console) -> int:
    from pipelines.analysis.baselines import ESTIMATORS
    from pipelines.analysis.summary import AnalysisError
    from pipelines.report import build_report

    store, fit_ids, description, defaults = _analysis_target(args)
    estimators = [e.strip() for e in args.estimators.split(",") if e.strip()]
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise JobError(f"--estimators: unknown {unknown[0]!r}; known: {', '.join(ESTIMATORS)}")
    tracking = args.tracking_uri or _default_tracking()
    if args.baselines and estimators:
        console.print(f"{store.survey}: classical baselines ({', '.join(estimators)}), cached "
                      "per group, on Ray", highlight=False)
    try:
        report = build_report(
            store, fit_ids=fit_ids, description=description,
            **_analysis_options(args, defaults),
            baselines=args.baselines and bool(estimators), estimators=estimators,
            noise=args.baseline_noise, address=args.address, tracking_uri=tracking,
            warn=lambda message: console.print(f"[yellow]warning:[/yellow] {message}"),
        )
    except AnalysisError as exc:
        raise JobError(str(exc)) from None
    console.print(_estimates_table(f"{store.survey}: estimated dimension", report.summary,
                                   report.baselines))
    console.print(f"report: {report.index}", highlight=False, soft_wrap=True)
    if report.mlflow_run_id:
        console.print(f"logged to MLflow run {report.mlflow_run_id} ({tracking})",
                      highlight=False)
    return 0


def _cmd_export(args: argparse.Namespace, console: Console) -> int:
    import json

    from pipelines.results.offline import export_plan
    from pipelines.results.store import Store

    job = load_job(args.job, args.overrides)
    fits = plan(job)
    check_data(fits)
    store = Store(args.out or default_out(), job.name)
    store.adopt_legacy(fits)
    exported = export_plan(job, store.statuses())
    try:
        Path(args.output).write_text(json.dumps(exported, indent=1))
    except OSError as exc:
        raise JobError(f"{args.output}: cannot write the plan ({exc.strerror})") from None
    console.print(f"{job.name}: {len(exported['fits'])} fits to {args.output}; train them "
                  f"with `python -m mflow.batch {args.output} -o OUT`, then "
                  f"`survey import {args.job} OUT`", highlight=False)
    return 0


def _cmd_import(args: argparse.Namespace, console: Console) -> int:
    from pipelines.results.offline import import_results
    from pipelines.results.store import Store

    job = load_job(args.job, args.overrides)
    out = args.out or default_out()
    tracking = args.tracking_uri or _default_tracking()
    reporter = _ProgressReporter(console)
    try:
        outcome = import_results(job, args.folder, out, tracking, reporter)
    finally:
        reporter.stop()
    console.print(f"{job.name}: imported {outcome.imported} fits, "
                  f"{outcome.already_ok} already stored ok", highlight=False)
    console.print(f"{job.name}: {_counts_line(Store(out, job.name), plan(job))}",
                  highlight=False)
    return 0


def _cmd_submit(args: argparse.Namespace, console: Console) -> int:
    from pipelines.execution.submit import submit

    load_job(args.job, args.overrides)  # refuse a bad job here, not on the cluster
    submission = submit(args.job, args.address, args.out, args.tracking_uri, args.overrides)
    console.print(submission.instructions())
    return 0


_COMMANDS = {
    "run": _cmd_run, "validate": _cmd_validate, "status": _cmd_status, "sync-mlflow": _cmd_sync,
    "analyze": _cmd_analyze, "report": _cmd_report, "submit": _cmd_submit,
    "export": _cmd_export, "import": _cmd_import,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``survey`` console script; returns the exit code."""
    from pipelines.job.readers import register_readers

    register_readers()  # every command may read a user's .parquet data file
    args = _parser().parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    try:
        return _COMMANDS[args.command](args, console)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConnectionError as exc:
        print(f"error: Ray: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
