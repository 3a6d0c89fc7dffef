"""What the ``survey`` commands share: exit codes, the default tracking store, and the
lines and tables they print (a job's axes, fits by status, estimates)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from pipelines.job import Fit, Job, count, masked

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED_FITS",
    "EXIT_INTERRUPTED",
    "counts_line",
    "default_tracking",
    "describe_job",
    "estimates_table",
    "fmt",
    "print_drawn_rows",
    "print_footprint",
    "print_not_ok",
    "print_untracked",
]

EXIT_BAD_INPUT = 2
EXIT_FAILED_FITS = 1
EXIT_INTERRUPTED = 130


def default_tracking() -> str:
    """``$MLFLOW_TRACKING_URI``, else the local SQLite store (``./mlflow.db``)."""
    from pipelines.results.tracking import DEFAULT_TRACKING_URI

    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def fmt(value: Any) -> str:
    """A value as a table shows it: integers without ``.0``, nothing for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _values(labels: Sequence[Any], limit: int = 12) -> str:
    shown = ", ".join(fmt(v) if not isinstance(v, list) else str(v) for v in labels[:limit])
    return shown + (f", ... ({len(labels) - limit} more)" if len(labels) > limit else "")


def describe_job(job: Job, console: Console) -> None:
    """Print the job's name, fit count, grid axes and resources."""
    n = count(job)
    console.print(f"[bold]{job.name}[/bold]: {n} fit{'s' if n != 1 else ''}")
    for axis in job.axes:
        console.print(f"  {axis.name} ({len(axis.labels)}): {_values(axis.labels)}")
    r = job.resources
    console.print(
        f"  resources: cpu {fmt(r.cpu)}, gpu {fmt(r.gpu)}, pack {r.pack}, retries "
        f"{r.retries}, max_concurrent {r.max_concurrent or 'as the cluster holds'}"
    )


def print_footprint(fits: Sequence[Fit], console: Console) -> None:
    """Print the largest fit's footprint (``pipelines.job.footprint``): its data in memory,
    its model's parameters, against this machine's memory."""
    from pipelines.job.footprint import footprint, gib, machine_memory

    prints = [footprint(fit.spec) for fit in fits]
    data = max(prints, key=lambda f: f.data_bytes + f.rotation_bytes)
    model = max(prints, key=lambda f: f.model_bytes)
    points = (f" ({data.points} points x {data.dim} dimensions)" if data.points is not None
              and data.dim is not None else " (known when the file is read)")
    params = (f"{model.parameters:,} parameters ({gib(model.model_bytes)} with gradients and "
              "Adam's moments)" if model.parameters is not None else "known when the data are read")
    console.print(
        f"  footprint of the largest fit: data {data.data_bytes / 2**20:,.2f} MB{points}, model "
        f"{params}; this machine has {gib(machine_memory())}", highlight=False,
    )
    print_drawn_rows(fits, console)


def print_drawn_rows(fits: Sequence[Fit], console: Console) -> None:
    """Say, for each user's file or folder, how many rows a fit trains on and how many it
    holds out for the per-point readout (``mflow.datasets.arrays.drawn``)."""
    from mflow.datasets.arrays import HELDOUT_ROWS
    from pipelines.job.footprint import user_rows

    said = set()
    for fit in fits:
        data = fit.spec.data
        rows = user_rows(data)
        if rows is None:
            continue
        offer, used = rows
        what = "images" if data.dataset == "images" else "rows"
        of = f"{offer:,} {what}" + ("" if data.classes is None else
                                    f" of classes {', '.join(map(str, data.classes))}")
        held = offer - used if data.n is None else min(HELDOUT_ROWS, offer - used)
        how = "" if data.n is None or used == offer else " (data.n)"
        line = f"  {data.path}: trains on {used:,} of {of}{how}"
        line += (f" and holds {held:,} out for the Jacobian readout" if held else
                 "; none are held out, so the Jacobian readout reads training rows")
        if line not in said:
            said.add(line)
            console.print(line, highlight=False)


def estimates_table(title: str, summary, baselines) -> Table:
    """The summary's estimates (and the baselines', when given) as a rich table."""
    from pipelines.report.build import table_rows

    headers, rows = table_rows(summary, baselines)
    # No vertical rules: the quickstart's table fits 80 columns.
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  padding=(0, 1, 0, 0))
    for i, header in enumerate(headers):
        # every column but the estimate's keeps its width; a mark beside it may wrap
        table.add_column(header, justify="left" if i == 0 else "right", no_wrap=i != 2)
    for row in rows:
        table.add_row(*row)
    return table


def counts_line(store, fits: Sequence[Fit] | None) -> str:
    """``N fits: a ok, b failed, ...`` for the planned ``fits`` (all stored ones if None)."""
    from pipelines.execution.survey import status_counts

    counts = status_counts(store, fits)
    order = ["ok", "diverged", "failed", "pending"]
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    parts += [f"{v} {k}" for k, v in sorted(counts.items()) if k not in order]
    total = sum(counts.values())
    return f"{total} fits" + (": " + ", ".join(parts) if parts else "")


def print_not_ok(store, fits: Sequence[Fit], console: Console, limit: int = 20) -> None:
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


def print_untracked(store, fits: Sequence[Fit], name: str, out: str, tracking: str,
                     console: Console) -> None:
    """Say how to add to MLflow the fits it missed (it was unreachable for a while)."""
    planned = {fit.fit_id for fit in fits}
    table = store.read_fits()
    missing = int(table[table["fit_id"].isin(planned)]["mlflow_run_id"].isna().sum())
    if missing:
        console.print(
            f"[yellow]warning:[/yellow] {missing} fits have no MLflow run (MLflow was "
            f"unreachable); record them later with: survey sync-mlflow {name} --out {out} "
            f"--tracking-uri {masked(tracking)}", highlight=False,
        )
