"""Memory pressure: a fit that Ray's memory monitor kills is recorded as failed with a message
that names memory, retried as ``resources.retries`` says, the survey ends with its summary and
a non-zero exit, and a rerun (with memory to spare) completes it.

Ray reads its memory monitor's settings when its node starts, so the survey runs in a fresh
process with its own Ray, its threshold set a few GiB above what this machine uses now, and a
fit whose data file (a user's ``array`` file of bytes, read as float64: eight times its size)
needs well beyond that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.execution.memory import MEMORY_KILL
from pipelines.execution.trials import _error_of
from tests.support import kill_session, write_job

GIB = 2**30
FILE_BYTES = GIB  # as float64 in the trial: 8 GiB, and its NaN check 1 GiB more
HEADROOM = 4 * GIB  # the threshold's margin over what is used now: Ray itself fits in it


def _meminfo() -> dict[str, int]:
    with open("/proc/meminfo") as f:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}


def _threshold() -> str:
    """``RAY_memory_usage_threshold`` a few GiB above the memory this machine uses now (Ray's
    monitor counts the node's total less what is available)."""
    info = _meminfo()
    used = info["MemTotal"] - info["MemAvailable"]
    return f"{(used + HEADROOM) / info['MemTotal']:.4f}"


def _byte_file(path: Path) -> None:
    """A ``FILE_BYTES`` .npy file of random bytes in 16 columns, written a slice at a time."""
    rows, dim, step = FILE_BYTES // 16, 16, 2**22
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, dim))
    rng = np.random.default_rng(0)
    for start in range(0, rows, step):
        x[start:start + step] = rng.integers(0, 256, (min(step, rows - start), dim), np.uint8)
    x.flush()
    del x


def test_a_memory_kill_is_named_as_one_whether_read_as_an_error_or_as_text(tmp_path: Path):
    from ray import cloudpickle
    from ray.exceptions import OutOfMemoryError

    from pipelines.execution.memory import KilledByMemoryMonitor

    text = ("1 worker(s) were killed due to the node running low on memory. Memory on the "
            "node was 7.10GB used / 23.54GB limit (0.301727)\nOOM kill reason: ...")
    pickled, text_file = tmp_path / "error.pkl", tmp_path / "error.txt"

    class Trial:  # what _error_of reads of a Tune trial
        pickled_error_file, error_file = str(pickled), str(text_file)

    for error in (OutOfMemoryError(text), KilledByMemoryMonitor(text)):
        pickled.write_bytes(cloudpickle.dumps(error))
        text_file.write_text(f"Traceback ...\n{type(error).__name__}: {text}")
        line, _ = _error_of(Trial())
        assert line == f"{MEMORY_KILL}: {text.splitlines()[0]}"
    pickled.unlink()  # only the text of the error file
    assert _error_of(Trial())[0] == f"{MEMORY_KILL}: {text.splitlines()[0]}"


@pytest.mark.slow
def test_fits_the_memory_monitor_kills_fail_are_retried_and_a_rerun_completes_them(
    tmp_path: Path,
):
    if _meminfo()["MemAvailable"] < 3 * HEADROOM:
        pytest.skip("too little free memory here to run a fit of 10 GiB and Ray beside it")
    data = tmp_path / "bytes.npy"
    _byte_file(data)
    raw = {
        "name": "memory",
        "data": {"dataset": "array", "path": str(data), "n": 200},
        "train": {"steps": 20, "log_every": 10, "batch_size": 32},
        "resources": {"cpu": 1, "retries": 1},
    }
    job_file = write_job(tmp_path, raw)
    out, uri = tmp_path / "results", f"sqlite:///{tmp_path / 'mlflow.db'}"
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items()
           if k != "MLFLOW_TRACKING_URI" and not k.startswith("RAY_memory")}
    env["RAY_TMPDIR"] = str(ray_tmp)
    args = [str(Path(sys.executable).parent / "survey"), "run", str(job_file), "--out",
            str(out), "--tracking-uri", uri]

    def run(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
        proc = subprocess.Popen(args, env={**env, **extra_env}, cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            printed, _ = proc.communicate(timeout=600)
        finally:
            kill_session(proc.pid)  # what Ray left running, or all of it after a timeout
        return subprocess.CompletedProcess(args, proc.returncode, printed, "")

    try:
        low = run({"RAY_memory_usage_threshold": _threshold(),
                   "RAY_memory_monitor_refresh_ms": "100"})
        printed = low.stdout + low.stderr
        assert low.returncode == 1, printed  # fits failed: EXIT_FAILED_FITS
        [row] = pd.read_parquet(out / "memory" / "fits").to_dict("records")
        assert row["status"] == "failed" and row["error"].startswith(f"{MEMORY_KILL}: "), row
        assert row["retries"] == raw["resources"]["retries"], row
        assert printed.count("restarting from its last checkpoint") == 1, printed
        assert "memory: 1 fits: 1 failed" in printed, printed  # the summary's counts line
        assert "Traceback" not in printed, printed

        again = run({})
        assert again.returncode == 0, again.stdout + again.stderr
        [row] = pd.read_parquet(out / "memory" / "fits").to_dict("records")
        assert row["status"] == "ok" and pd.isna(row["error"]), row
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
