"""Secrets (issue 28): a tracking URI or a Ray address with a user and password is never
printed or logged in clear; the password reads ``***``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.execution.survey import Reporter, _open_tracker
from pipelines.job import masked, parse_job
from pipelines.results.tracking import describe

SECRET = "hunter2"
TRACKING = f"http://bob:{SECRET}@127.0.0.1:9/"  # nobody listens on port 9 (discard)
ADDRESS = f"bob:{SECRET}@127.0.0.1:9"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TRACKING, "http://bob:***@127.0.0.1:9/"),
        ("https://bob:p%40ss@mlflow.example.org", "https://bob:***@mlflow.example.org"),
        (f"ray://bob:{SECRET}@head:10001", "ray://bob:***@head:10001"),
        (f"cannot reach a Ray cluster at {ADDRESS} (refused)",
         "cannot reach a Ray cluster at bob:***@127.0.0.1:9 (refused)"),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("s3://bucket/x and 10.0.0.1:6379", "s3://bucket/x and 10.0.0.1:6379"),
    ],
)
def test_a_password_is_masked(text: str, expected: str):
    assert masked(text) == expected
    assert SECRET not in describe(text)


def _files_with_secret(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file()
            and SECRET.encode() in p.read_bytes()]


def test_survey_run_never_prints_or_writes_the_password(tmp_path: Path):
    # A fresh process: in this one the session's Ray may already be up, and ray.init would
    # join it rather than try the address.
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps({"name": "secret", "data": {"dataset": "sine", "n": 200},
                                "train": {"steps": 10, "batch_size": 32}}))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", str(path), "--tracking-uri", TRACKING,
         "--address", ADDRESS, "--out", str(tmp_path / "results")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2  # the address cannot be reached
    assert "http://bob:***@127.0.0.1:9/" in done.stdout
    assert done.stderr.splitlines()[0].startswith(
        "error: Ray: cannot reach a Ray cluster at bob:***@127.0.0.1:9")
    assert SECRET not in done.stdout + done.stderr
    assert _files_with_secret(tmp_path) == []


class _Warnings(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warn(self, message: str) -> None:
        self.lines.append(message)


def test_an_unreachable_tracking_server_is_named_without_its_password():
    job = parse_job({"name": "secret", "data": {"dataset": "sine"}})
    reporter = _Warnings()
    assert _open_tracker(TRACKING, job, 1, 1, reporter) is None
    [line] = reporter.lines
    assert line.startswith("MLflow at http://bob:***@127.0.0.1:9/: ConnectionError: no MLflow "
                           "server answers at http://bob:***@127.0.0.1:9/")
    assert SECRET not in line
