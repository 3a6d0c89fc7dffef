"""The progress bar of ``survey run`` and ``survey import``: fits done, running, failed,
diverged, and the time left. Where the output is not a terminal (a log file, ``ray job logs``
of a submitted survey) a bar cannot redraw, so each finished fit prints one line instead."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipelines.execution.survey import Reporter
from pipelines.job import Fit

__all__ = ["ProgressReporter"]


class ProgressReporter(Reporter):
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
        if not self.console.is_terminal and self.task is not None:
            self.console.print(self._line(fit, status, estimate), highlight=False)

    def _line(self, fit: Fit, status: str, estimate: int | None) -> str:
        """``[done/pending] fit_id status estimate E; running r, failed f, diverged v; elapsed,
        ETA`` (the time left at the mean pace so far); a count of failed or diverged fits
        shows once it is above 0, so that a line fits 80 columns."""
        # The bar's own task holds the counts and the clock: no second copy of them here.
        task = next(t for t in self.progress.tasks if t.id == self.task)
        done, pending, elapsed = int(task.completed), int(task.total or 0), task.elapsed or 0.0
        left = elapsed / max(done, 1) * max(0, pending - done)
        read = f" estimate {estimate}" if status == "ok" and estimate is not None else ""
        counts = [f"running {len(self.running)}"] + [
            f"{what} {count}" for what, count in (("failed", self.failed),
                                                  ("diverged", self.diverged)) if count]
        return (f"[{done}/{pending}] {fit.fit_id} {status}{read}; {', '.join(counts)}; "
                f"{_clock(elapsed)} elapsed, ETA {_clock(left)}")

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}")

    def stop(self) -> None:
        if self.task is not None:
            self.progress.stop()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
