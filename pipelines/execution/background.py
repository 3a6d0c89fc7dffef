"""One background thread that runs the driver's writes in order, off Tune's event loop."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Background"]

_STOP = object()  # the item that ends the thread


class Background:
    """Runs submitted calls one at a time, in the order submitted, in one daemon thread.

    The queue is bounded: ``submit`` waits while ``maxsize`` calls are queued, so a slow
    writer slows the submitter down rather than piling up memory. The first call that raises
    stops the writing: later calls are dropped, ``error`` holds the exception, ``check``
    raises it in the submitter's thread and ``close`` raises it after the thread ended.
    ``close`` waits for every call queued before it (the flush at the end of a survey, also
    when it was interrupted), so nothing submitted is lost when the driver stops normally.
    ``abandon`` gives up on what is queued (the user pressed Ctrl-C again while waiting):
    the call under way finishes, the others are dropped.

    Example:
        >>> done = []
        >>> writer = Background(maxsize=2)
        >>> for k in range(3):
        ...     writer.submit(done.append, k)
        >>> writer.close()
        >>> done
        [0, 1, 2]
    """

    def __init__(self, maxsize: int = 64, name: str = "survey-writer") -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        self._closed = False
        self.abandoned = False  # abandon() was called: queued calls are dropped
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self.error is None and not self.abandoned:
                    call, args, kwargs = item
                    try:
                        call(*args, **kwargs)
                    except BaseException as exc:  # noqa: BLE001 - raised by check and close
                        self.error = exc
            finally:
                self._queue.task_done()

    def submit(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue ``call(*args, **kwargs)``; waits while the queue is full."""
        if self._closed:
            raise RuntimeError("the background writer is closed")
        self.check()
        self._put((call, args, kwargs))

    def _put(self, item: Any) -> None:
        """Queue ``item``, waiting while the queue is full in timed waits (see ``close``)."""
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def check(self) -> None:
        """Raise the error a queued call raised, if any."""
        if self.error is not None:
            raise self.error

    def pending(self) -> int:
        """Calls queued or running now."""
        return self._queue.unfinished_tasks

    @property
    def closed(self) -> bool:
        """``close`` or ``abandon`` was called: nothing more can be submitted."""
        return self._closed

    def abandon(self) -> None:
        """Drop the calls still queued and end the thread without waiting for it; the call
        under way, if any, runs to its end. A later ``close`` returns at once."""
        self.abandoned = True
        if not self._closed:
            self._closed = True
            # On a full queue the stop is left out: the thread drops every queued call all
            # the same and then waits, a daemon, for nothing more.
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_STOP)

    def close(self) -> None:
        """Run every queued call, end the thread, then raise the first error, if any."""
        if not self._closed:
            self._closed = True
            self._put(_STOP)
            # Timed joins: an untimed one sleeps in the C lock until the thread ends, and a
            # Ctrl-C the kernel hands to another thread is not raised until then.
            while self._thread.is_alive():
                self._thread.join(0.1)
        self.check()
