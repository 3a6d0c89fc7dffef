"""The ``survey`` commands that plan, run and record fits: ``validate``, ``run``, ``status``,
``sync-mlflow``, ``export``, ``import`` and ``submit``. Each takes the parsed arguments and a
console and returns the exit code; bad input raises ``JobError``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from mflow.checkpoint import error_line
from pipelines.cli.common import (
    EXIT_FAILED_FITS,
    EXIT_INTERRUPTED,
    counts_line,
    default_tracking,
    describe_job,
    estimates_table,
    fmt,
    print_drawn_rows,
    print_footprint,
    print_not_ok,
    print_untracked,
)
from pipelines.cli.parser import run_choices
from pipelines.cli.progress import ProgressReporter
from pipelines.job import JobError, check_data, load_job, masked, plan
from pipelines.results import default_out, is_job_file

__all__ = ["export", "import_batch", "run", "status", "submit", "sync_mlflow", "validate"]


def validate(args: argparse.Namespace, console: Console) -> int:
    job = load_job(args.job, args.overrides)
    fits = plan(job)
    check_data(fits)
    describe_job(job, console)
    print_footprint(fits, console)
    if args.fits:
        for fit in fits:
            axes = " ".join(f"{k}={fmt(v)}" for k, v in fit.axes.items())
            console.print(f"  {fit.fit_id}  {axes}", highlight=False)
    return 0


def run(args: argparse.Namespace, console: Console) -> int:
    from pipelines.analysis.summary import summarize
    from pipelines.execution.survey import run_survey
    from pipelines.results.store import Store
    from pipelines.results.tracking import describe

    job = load_job(args.job, args.overrides)
    fits = plan(job)
    check_data(fits, local=args.address is None)
    out = args.out or default_out()
    tracking = args.tracking_uri or default_tracking()
    store = Store(out, job.name)
    console.print(f"[bold]{job.name}[/bold]: results in {store.root}, MLflow at "
                  f"{masked(tracking)}", highlight=False)
    print_drawn_rows(fits, console)
    reporter = ProgressReporter(console)
    try:
        outcome = run_survey(
            job, out, tracking, address=args.address, retry_failed=args.retry_failed,
            reporter=reporter, restart_unresumable=args.restart_unresumable,
        )
    finally:
        reporter.stop()
    frame = summarize(store.read_fits(), fit_ids=[fit.fit_id for fit in fits],
                      **job.analysis.options())
    if len(frame):
        console.print(estimates_table(f"{job.name}: estimated dimension", frame, None))
    counts = counts_line(store, fits)
    console.print(f"{job.name}: {counts}", highlight=False)
    print_not_ok(store, fits, console)
    print_untracked(store, fits, job.name, out, tracking, console)
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


def status(args: argparse.Namespace, console: Console) -> int:
    from pipelines.results.store import Store

    out = args.out or default_out()
    if is_job_file(args.target):
        job = load_job(args.target, args.overrides)
        fits = plan(job)
        store = Store(out, job.name)
        store.adopt_legacy(fits)
        console.print(f"{job.name}: {counts_line(store, fits)}", highlight=False)
        return 0
    if args.overrides:
        raise JobError("--set: needs a job file, not a survey name")
    store = Store(out, args.target)
    if not store.exists():
        if store.started():
            # A run is under way (or was stopped) before its first fit finished: say so, and
            # how to see the planned count, rather than deny the survey.
            console.print(f"{args.target}: started, no fit finished yet (give the job file "
                          "for the planned count: survey status JOB.yaml)", highlight=False)
            return 0
        raise JobError(f"{args.target}: no survey of that name under {out}")
    console.print(f"{args.target}: {counts_line(store, None)}", highlight=False)
    return 0


def sync_mlflow(args: argparse.Namespace, console: Console) -> int:
    from pipelines.results.backfill import backfill
    from pipelines.results.store import Store
    from pipelines.results.tracking import describe

    out = args.out or default_out()
    tracking = args.tracking_uri or default_tracking()
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
        line = error_line(exc, 500)
        print(masked(f"error: MLflow at {tracking}: {line}; nothing more recorded, run it "
                     "again when MLflow is back"), file=sys.stderr)
        return EXIT_FAILED_FITS
    removed = f", {done.removed} duplicate runs deleted" if done.removed else ""
    console.print(f"{name}: {done.fits} fits, {done.present} already in MLflow, "
                  f"{done.added} recorded now{removed}; MLflow: {describe(tracking)}",
                  highlight=False)
    return 0


def export(args: argparse.Namespace, console: Console) -> int:
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


def import_batch(args: argparse.Namespace, console: Console) -> int:
    from pipelines.results.offline import import_results
    from pipelines.results.store import Store

    job = load_job(args.job, args.overrides)
    out = args.out or default_out()
    tracking = args.tracking_uri or default_tracking()
    reporter = ProgressReporter(console)
    try:
        outcome = import_results(job, args.folder, out, tracking, reporter)
    finally:
        reporter.stop()
    console.print(f"{job.name}: imported {outcome.imported} fits, "
                  f"{outcome.already_ok} already stored ok", highlight=False)
    console.print(f"{job.name}: {counts_line(Store(out, job.name), plan(job))}",
                  highlight=False)
    return 0


def submit(args: argparse.Namespace, console: Console) -> int:
    from pipelines.execution.submit import submit

    load_job(args.job, args.overrides)  # refuse a bad job here, not on the cluster
    submission = submit(args.job, args.address, args.out, args.tracking_uri, args.overrides,
                        run_flags=run_choices(args))
    console.print(submission.instructions())
    return 0
