"""The ``survey`` command line: its subcommands, arguments and help."""

from __future__ import annotations

import argparse

from mflow.checkpoint import RESTART_FLAG

__all__ = ["parser", "run_choices", "with_run_choices"]


def with_run_choices(p: argparse.ArgumentParser) -> None:
    """The choices of ``survey run`` about fits an earlier run left (``run`` and ``submit``,
    which passes them on to the run on the cluster: ``run_choices``)."""
    p.add_argument("--no-retry-failed", dest="retry_failed", action="store_false",
                   help="skip fits stored as failed or diverged (default: run them again)")
    p.add_argument(RESTART_FLAG, dest="restart_unresumable", action="store_true",
                   help="train from step 0 a fit whose earlier checkpoint cannot be restored "
                   "as it was taken (default: such a fit fails, its note saying why)")


def run_choices(args: argparse.Namespace) -> list[str]:
    """The ``survey run`` flags that give ``args``' choices (what ``with_run_choices`` read)."""
    flags = [] if args.retry_failed else ["--no-retry-failed"]
    return flags + ([RESTART_FLAG] if args.restart_unresumable else [])


def parser() -> argparse.ArgumentParser:
    """The parser of ``survey COMMAND ...``; ``args.command`` names the subcommand."""
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
    with_run_choices(run)
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
    with_run_choices(sub)
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
