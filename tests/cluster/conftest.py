"""A local multi-node Ray cluster shaped like cluster.yaml's, and a quickstart survey on it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SURVEY = Path(sys.executable).parent / "survey"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head_cluster() -> Iterator:
    """A head that trains nothing (0 CPUs), like cluster.yaml's, with no workers yet; its
    dashboard's address is ``cluster.dashboard`` (the state API reads it)."""
    from ray.cluster_utils import Cluster

    port = _free_port()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": True, "dashboard_port": port,
                        "object_store_memory": 80_000_000},
    )
    cluster.dashboard = f"http://127.0.0.1:{port}"
    try:
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
def quickstart_on(tmp_path: Path) -> Callable[..., tuple[subprocess.Popen, Path]]:
    """``start(cluster, *sets)``: ``survey run jobs/quickstart.yaml`` on ``cluster`` with
    ``--set`` overrides, as a process; returns it and the survey's fits folder. Each fit runs
    in its own trial to its last step (the job packs and stops early; the tests count trials
    and steps), unless ``sets`` say otherwise."""
    procs: list[subprocess.Popen] = []

    def start(cluster, *sets: str) -> tuple[subprocess.Popen, Path]:
        out = tmp_path / "results"
        env = {**os.environ, "PATH": f"{SURVEY.parent}:{os.environ['PATH']}"}
        cmd = [str(SURVEY), "run", "jobs/quickstart.yaml", "--out", str(out),
               "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--address", cluster.address]
        for item in ("resources.pack=1", "train.early_stop_window=0", *sets):
            cmd += ["--set", item]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        return proc, out / "quickstart" / "fits"

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
