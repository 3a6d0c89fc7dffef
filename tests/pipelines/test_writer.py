"""The driver's writes against its display and the user's Ctrl-C: a progress display that
raises never stops a fit from being recorded, and a second Ctrl-C while the fits that ended
are written leaves them, says how many, and a rerun runs them."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from pipelines.execution.survey import Reporter, run_survey
from pipelines.job import parse_job, plan
from tests.support import kill_session, wait_for, write_job


class _Broken(Reporter):
    """A progress display that raises whatever it is told."""

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self, *args) -> None:
        self.calls += 1
        raise RuntimeError("the terminal went away")

    planned = started = retrying = ended = warn = _fail


def test_a_raising_progress_display_never_stops_the_writes(
    tmp_path: Path, tracking_uri: str, tiny_job, ray_local, caplog: pytest.LogCaptureFixture
):
    job = tiny_job("broken-display", grid={"seed": [0, 1, 2]},
                   train={"steps": 40, "log_every": 20, "batch_size": 32},
                   resources={"retries": 0, "pack": 1})
    display = _Broken()
    out = str(tmp_path / "results")
    with caplog.at_level(logging.WARNING, logger="pipelines.execution.survey"):
        outcome = run_survey(job, out, tracking_uri, reporter=display)
    assert outcome.counts == {"ok": 3} and not outcome.interrupted
    frame = pd.read_parquet(Path(out) / job.name / "fits")
    assert sorted(frame["fit_id"]) == sorted(f.fit_id for f in plan(job))
    assert set(frame["status"]) == {"ok"} and frame["mlflow_run_id"].notna().all()
    assert display.calls > 3  # told of every fit, and each time it raised
    said = [r.getMessage() for r in caplog.records if "progress display" in r.getMessage()]
    assert len(said) == 1 and "RuntimeError: the terminal went away" in said[0]


# MLflow hangs from the second fit on (as a stalled tracking server would): the first fit is
# recorded, the second waits in the writer; the marker file says when that wait began.
_HANGING_MLFLOW = """
import faulthandler, os, pathlib, signal, sys, time
faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks where it waits
from pipelines.results.tracking import Tracker
log_fit, calls = Tracker.log_fit, []
def hang_after_the_first(self, *args, **kwargs):
    calls.append(1)
    if len(calls) > 1:
        pathlib.Path(os.environ["MFLOW_TEST_HANG_MARK"]).touch()
        time.sleep(3600)
    return log_fit(self, *args, **kwargs)
Tracker.log_fit = hang_after_the_first
from pipelines.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_second_ctrl_c_says_how_many_fits_were_not_written_and_a_rerun_runs_them(
    tmp_path: Path,
):
    """Ctrl-C once while a fit trains and a finished one waits on MLflow: Tune stops and the
    driver says it is writing the fit that ended; Ctrl-C again: it says that fit was not
    written and a rerun will run it, and exits 130. The rerun records every fit once."""
    raw = {
        "name": "second-ctrl-c",
        "data": {"dataset": "sine", "n": 200},
        "grid": {"seed": [0, 1, 2]},
        "train": {"steps": 400, "log_every": 50, "batch_size": 32},
        "resources": {"cpu": 1, "retries": 0, "pack": 1, "checkpoint_every_s": 0},
    }
    job_file = write_job(tmp_path, raw)
    planned = sorted(f.fit_id for f in plan(parse_job(raw)))
    out, uri = tmp_path / "results", f"sqlite:///{tmp_path / 'mlflow.db'}"
    fits_dir = out / raw["name"] / "fits"
    mark, log_path = tmp_path / "hanging", tmp_path / "first.log"
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "MFLOW_TEST_HANG_MARK": str(mark),
           "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = ["run", str(job_file), "--out", str(out), "--tracking-uri", uri]
    (tmp_path / "hang.py").write_text(_HANGING_MLFLOW)
    try:
        with open(log_path, "w") as log:
            first = subprocess.Popen([sys.executable, str(tmp_path / "hang.py"), *args],
                                     stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=tmp_path, start_new_session=True)
        try:
            wait_for(lambda: (mark.exists() and any(fits_dir.glob("*.parquet")))
                     or first.poll() is not None, 300, "a stored fit and one waiting on MLflow")
            assert first.poll() is None, log_path.read_text()
            os.kill(first.pid, signal.SIGINT)  # Tune stops; the third fit is still training
            wait_for(lambda: "interrupted: writing the" in log_path.read_text()
                     or first.poll() is not None, 120, "the driver to write what ended")
            assert first.poll() is None, log_path.read_text()
            os.kill(first.pid, signal.SIGINT)  # leave the write that waits on MLflow
            try:
                first.wait(120)
            except subprocess.TimeoutExpired:
                os.kill(first.pid, signal.SIGUSR1)  # every thread's stack, into the log
                time.sleep(3)
                raise AssertionError("the second Ctrl-C did not end the survey:\n"
                                     + log_path.read_text()) from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                first.kill()
            kill_session(first.pid)
        printed = log_path.read_text()
        assert first.returncode == 130, printed
        waiting = int(re.search(r"interrupted: writing the (\d+) fits? that ended", printed)[1])
        left = re.search(r"(\d+) fits? (?:was|were) not written; a rerun will run (?:it|them)",
                         printed)
        assert left, printed
        written = sorted(p.stem for p in fits_dir.glob("*.parquet"))
        assert len(written) == 1 and waiting == int(left[1]) == 1, printed
        assert "run the same command again to resume" in printed

        second = subprocess.run([str(Path(sys.executable).parent / "survey"), *args],
                                capture_output=True, text=True, env=env, cwd=tmp_path,
                                timeout=600)
        assert second.returncode == 0, second.stdout + second.stderr
        frame = pd.read_parquet(fits_dir)
        assert sorted(frame["fit_id"]) == planned and set(frame["status"]) == {"ok"}
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
