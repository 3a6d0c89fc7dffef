"""The ``survey`` console script: parse the command line, run the command, turn bad input
into one line on stderr and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console

from pipelines.cli import analyze, commands
from pipelines.cli.common import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from pipelines.cli.parser import parser
from pipelines.job import JobError, masked

__all__ = ["main"]

_COMMANDS = {
    "run": commands.run, "validate": commands.validate, "status": commands.status,
    "sync-mlflow": commands.sync_mlflow, "analyze": analyze.analyze, "report": analyze.report,
    "submit": commands.submit, "export": commands.export, "import": commands.import_batch,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``survey`` console script; returns the exit code."""
    from pipelines.job.readers import register_readers

    register_readers()  # every command may read a user's .parquet data file
    args = parser().parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    try:
        return _COMMANDS[args.command](args, console)
    except JobError as exc:
        print(masked(f"error: {exc}"), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConnectionError as exc:
        print(masked(f"error: Ray: {exc}"), file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
