"""What tests share: job files, waiting on a condition with a bound (never a fixed sleep before
an assertion), cleaning up a process session, and torch's thread count for a block."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["descendants", "kill_session", "torch_threads", "wait_for", "write_job"]


def write_job(folder: Path, raw: dict) -> Path:
    """``raw`` written as the job file ``folder/<name>.yaml``."""
    path = folder / f"{raw['name']}.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    return path


def _processes() -> dict[int, tuple[int, int, str]]:
    """``{pid: (parent pid, session id, command line)}`` of the processes visible in /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(entry)] = (int(fields[1]), int(fields[3]), cmdline)
    return out


def descendants(pid: int) -> dict[int, str]:
    """The processes below ``pid`` (children, grandchildren, ...) and their command lines."""
    table = _processes()
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _, cmd) in table.items():
            if ppid == parent and child not in found:
                found[child] = cmd
                frontier.append(child)
    return found


def kill_session(sid: int) -> None:
    """SIGKILL what is left of a session this test started (Ray's agents outlive a killed
    driver for a while)."""
    for pid, (_, session, _) in _processes().items():
        if session == sid and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def wait_for(condition, timeout_s: float, what: str, poll_s: float = 0.2) -> None:
    """Poll ``condition()`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch threads, then put back the number before it. Tiny
    models train several times faster on one thread than on two contended ones; a conv flow
    on 784-D points wants every core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
