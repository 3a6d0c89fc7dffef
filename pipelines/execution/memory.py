"""Trials killed by Ray's memory monitor: failed fits, retried, named as memory kills.

Ray's memory monitor kills a worker when the node's memory use passes
``RAY_memory_usage_threshold``; the trial's pending actor task then resolves to
``ray.exceptions.OutOfMemoryError``. Ray Tune 2.60's actor manager expects a dead trial actor
to raise a ``RayActorError`` and stops the whole Tune run on anything else ("Caught unexpected
exception"), so a memory kill would end the survey without a row or a retry.
``memory_kills_fail_trials`` hands Tune the kill as the dead actor it is
(``KilledByMemoryMonitor``): Tune retries the trial (``resources.retries``) and then reports
it failed, and ``describe`` makes the line the fits table stores.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from ray.exceptions import OutOfMemoryError, RayActorError

__all__ = ["MEMORY_KILL", "KilledByMemoryMonitor", "describe", "memory_kills_fail_trials"]

MEMORY_KILL = "killed by Ray's memory monitor (out of memory)"

# What Ray's kill message says when only its text reached us (an error file, no exception).
_RAY_WORDS = "running low on memory"
_EXCEPTION_NAME = re.compile(r"^[A-Za-z_][\w.]*: ")  # "ray.exceptions.OutOfMemoryError: "


class KilledByMemoryMonitor(RayActorError):
    """A trial's actor that Ray's memory monitor killed; ``message`` is Ray's account."""

    def __init__(self, message: str) -> None:
        super().__init__(error_msg=message)
        self.message = message

    def __reduce__(self):  # Tune pickles trial errors; RayActorError's args do not rebuild it
        return (KilledByMemoryMonitor, (self.message,))

    def __str__(self) -> str:
        return self.message


def describe(error: BaseException | str) -> str | None:
    """The one line a fit killed for memory is recorded with, or ``None`` when ``error`` (an
    exception, or the text of one) is not a memory kill.

    Example:
        >>> kill = OutOfMemoryError("1 worker(s) were killed due to the node running low on "
        ...                         "memory. Memory on the node was 7.1GB used")
        >>> describe(kill)[:75]
        "killed by Ray's memory monitor (out of memory): 1 worker(s) were killed due"
        >>> describe(ValueError("bad")) is None
        True
    """
    text = str(error)
    if not isinstance(error, OutOfMemoryError | KilledByMemoryMonitor) and (
        not isinstance(error, str) or _RAY_WORDS not in text
    ):
        return None
    lines = [line.strip() for line in text.splitlines() if _RAY_WORDS in line]
    line = lines[0] if lines else text.strip().splitlines()[0]
    return f"{MEMORY_KILL}: {_EXCEPTION_NAME.sub('', line)}"


@contextlib.contextmanager
def memory_kills_fail_trials() -> Iterator[None]:
    """While open, Tune treats a trial killed by Ray's memory monitor as a failed trial."""
    from ray.air.execution._internal.actor_manager import RayActorManager

    original = RayActorManager._actor_task_failed

    def failed(self, tracked_actor_task, exception):
        if isinstance(exception, OutOfMemoryError):
            exception = KilledByMemoryMonitor(str(exception))
        return original(self, tracked_actor_task=tracked_actor_task, exception=exception)

    RayActorManager._actor_task_failed = failed
    try:
        yield
    finally:
        RayActorManager._actor_task_failed = original
