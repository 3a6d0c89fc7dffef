"""``survey submit`` against a real Ray cluster with the Jobs API (a head started here)."""

from __future__ import annotations

import socket
import time

import pandas as pd
import pytest

from pipelines.execution.submit import submit
from pipelines.job import JobError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("out", "uri", "message"),
    [
        ("results", "http://127.0.0.1:5000", "relative"),
        ("/shared/results", "sqlite:///mlflow.db", "is local"),
    ],
)
def test_submit_refuses_places_the_cluster_cannot_keep(out, uri, message):
    with pytest.raises(JobError, match=message):
        submit("jobs/quickstart.yaml", "http://127.0.0.1:1", out, uri)


def test_submit_refuses_job_files_outside_the_project(tmp_path):
    job = tmp_path / "x.yaml"
    job.write_text("name: x\n")
    with pytest.raises(JobError, match="must lie inside"):
        submit(str(job), "http://127.0.0.1:1", "/shared/r", "http://127.0.0.1:5000")


@pytest.mark.slow
def test_submitted_survey_runs_on_the_cluster(tmp_path, monkeypatch):
    import os
    import sys

    from ray.cluster_utils import Cluster

    # The job's entrypoint calls `python`: let it be this environment's, as on a cluster node
    # whose image has the project installed.
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}")
    from ray.job_submission import JobStatus, JobSubmissionClient

    port = _free_port()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2, "include_dashboard": True, "dashboard_port": port,
            # The Jobs API runs through the node's agent; its default port (52365) is taken
            # when another Ray runs on the machine (a user's survey beside the tests).
            "dashboard_agent_listen_port": _free_port(),
            "object_store_memory": 80_000_000,
        },
    )
    server = None
    try:
        import subprocess

        mlflow_port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
             str(mlflow_port), "--backend-store-uri", f"sqlite:///{tmp_path}/m.db",
             "--default-artifact-root", str(tmp_path / "art")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        address = f"http://127.0.0.1:{port}"
        out = tmp_path / "results"
        sub = submit(
            "jobs/quickstart.yaml", address, str(out), f"http://127.0.0.1:{mlflow_port}",
            overrides=["grid.dataset=[line]", "grid.seed=[0]", "train.steps=50",
                       "data.n=300"],
        )
        assert "ray job logs" in sub.instructions()
        client = JobSubmissionClient(address)
        deadline = time.time() + 300
        while time.time() < deadline:
            status = client.get_job_status(sub.submission_id)
            if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                break
            time.sleep(2)
        logs = client.get_job_logs(sub.submission_id)
        assert status == JobStatus.SUCCEEDED, logs[-2000:]
        fits = pd.read_parquet(out / "quickstart" / "fits")
        assert list(fits["status"]) == ["ok"]

        # A project folder over the Jobs API's upload limit (100 MiB) is refused in words.
        big = tmp_path / "project"
        (big / "jobs").mkdir(parents=True)
        (big / "jobs" / "x.yaml").write_text("name: x\n")
        with open(big / "data.bin", "wb") as f:  # random bytes: the zip cannot shrink them
            for _ in range(105):
                f.write(os.urandom(1 << 20))
        with pytest.raises(JobError, match="too large to upload.*gitignore"):
            submit(str(big / "jobs" / "x.yaml"), address, str(out),
                   f"http://127.0.0.1:{mlflow_port}", root=big)
    finally:
        if server is not None:
            server.terminate()
        cluster.shutdown()


def test_cli_submit_refuses_an_unreachable_cluster_in_one_line(capsys):
    from pipelines.cli import main

    code = main(["submit", "jobs/quickstart.yaml", "--address", "http://127.0.0.1:1",
                 "--out", "/shared/results", "--tracking-uri", "http://127.0.0.1:5000"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: --address http://127.0.0.1:1:") and "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "passed"),
    [([], []), (["--no-retry-failed", "--restart-unresumable"],
                ["--no-retry-failed", "--restart-unresumable"])],
)
def test_submit_passes_the_run_choices_on(flags, passed, monkeypatch):
    """``survey submit``'s --no-retry-failed and --restart-unresumable reach the ``survey run``
    on the cluster (its entrypoint), as the user asked them of submit."""
    from ray import job_submission

    from pipelines.cli import parser as cli_parser

    sent: list[str] = []

    class Recording:  # the Jobs API client, as far as submit uses it: what it was sent
        def __init__(self, address):
            self.address = address

        def submit_job(self, entrypoint, runtime_env):
            sent.append(entrypoint)
            return "raysubmit_1"

    monkeypatch.setattr(job_submission, "JobSubmissionClient", Recording)
    args = cli_parser.parser().parse_args(
        ["submit", "jobs/quickstart.yaml", "--address", "http://127.0.0.1:8265", "--out",
         "/shared/r", "--tracking-uri", "http://127.0.0.1:5000", *flags])
    submit(args.job, args.address, args.out, args.tracking_uri,
           run_flags=cli_parser.run_choices(args))
    words = sent[0].split()
    assert words[:4] == ["python", "-m", "pipelines.cli", "run"]
    assert [w for w in words if w in ("--no-retry-failed", "--restart-unresumable")] == passed
