"""The driver's background writer: in order, bounded, flushed on close, first error kept."""

from __future__ import annotations

import threading
import time

import pytest

from pipelines.execution.background import Background
from tests.support import wait_for


def test_calls_run_in_order_in_another_thread_and_close_waits_for_them():
    done, threads = [], set()

    def slow(k):
        time.sleep(0.01)
        threads.add(threading.get_ident())
        done.append(k)

    writer = Background(maxsize=4)
    for k in range(20):
        writer.submit(slow, k)
    writer.close()
    assert done == list(range(20))
    assert threads and threading.get_ident() not in threads


def test_a_full_queue_makes_submit_wait():
    gate = threading.Event()
    writer = Background(maxsize=2)
    writer.submit(gate.wait)  # running
    writer.submit(lambda: None)
    writer.submit(lambda: None)  # the queue holds two now
    submitted = threading.Event()
    threading.Thread(target=lambda: (writer.submit(lambda: None), submitted.set()),
                     daemon=True).start()
    # The fourth submit waits for room in the queue (queue.Queue's not_full condition).
    wait_for(lambda: len(writer._queue.not_full._waiters) == 1, 30, "submit to wait")
    assert not submitted.is_set() and writer.pending() == 3
    gate.set()
    assert submitted.wait(5)
    writer.close()
    assert writer.pending() == 0


def test_the_first_error_stops_the_writing_and_is_raised():
    done = []

    def boom():
        raise OSError("disk full")

    writer = Background()
    writer.submit(done.append, 1)
    writer.submit(boom)
    writer.submit(done.append, 2)
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert done == [1]
    with pytest.raises(OSError):
        writer.check()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(done.append, 3)


def test_abandon_drops_what_is_queued_and_lets_the_call_under_way_finish():
    started, gate, done = threading.Event(), threading.Event(), []

    def running():
        started.set()
        gate.wait(30)
        done.append("running")

    writer = Background()
    writer.submit(running)
    writer.submit(done.append, "queued")
    assert started.wait(30)
    writer.abandon()
    gate.set()
    writer.close()  # returns at once
    wait_for(lambda: writer.pending() == 0, 30, "the writer thread to end")
    assert done == ["running"] and writer.closed and writer.abandoned
