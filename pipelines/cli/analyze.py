"""The ``survey`` commands that read stored fits again: ``analyze`` (the summary with another
readout rule or grouping) and ``report`` (baselines, figures, HTML)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from pipelines.cli.common import default_tracking, estimates_table
from pipelines.job import JobError, load_job, masked, plan
from pipelines.results import default_out, is_job_file

__all__ = ["analyze", "report"]


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


def analyze(args: argparse.Namespace, console: Console) -> int:
    from pipelines.analysis.baselines import read_baselines
    from pipelines.analysis.readouts import AnalysisError
    from pipelines.analysis.scales import SCALE_RULE
    from pipelines.analysis.stored import summary_path, update_scales, write_summary
    from pipelines.analysis.summary import summarize

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
    console.print(estimates_table(f"{store.survey}: estimated dimension", summary, baselines))
    console.print(f"summary.parquet: {summary_path(store)}", highlight=False)
    if scales is not None:
        console.print(f"scales.parquet (the estimate at each noise floor): {scales}",
                      highlight=False)
    return 0


def report(args: argparse.Namespace, console: Console) -> int:
    from pipelines.analysis.baselines import ESTIMATORS
    from pipelines.analysis.readouts import AnalysisError
    from pipelines.report.build import build_report

    store, fit_ids, description, defaults = _analysis_target(args)
    estimators = [e.strip() for e in args.estimators.split(",") if e.strip()]
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise JobError(f"--estimators: unknown {unknown[0]!r}; known: {', '.join(ESTIMATORS)}")
    tracking = args.tracking_uri or default_tracking()
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
    console.print(estimates_table(f"{store.survey}: estimated dimension", report.summary,
                                   report.baselines))
    console.print(f"report: {report.index}", highlight=False, soft_wrap=True)
    if report.mlflow_run_id:
        console.print(f"logged to MLflow run {report.mlflow_run_id} ({masked(tracking)})",
                      highlight=False)
    return 0
