"""A survey on a three-node Ray cluster on one machine: it spreads, and it survives a lost node."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
SURVEY = Path(sys.executable).parent / "survey"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_survey_spreads_over_nodes_and_survives_losing_one(tmp_path):
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    port = _free_port()
    # The head trains nothing (0 CPUs), like cluster.yaml's; two one-CPU workers do.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": True, "dashboard_port": port,
                        "object_store_memory": 80_000_000},
    )
    workers = [cluster.add_node(num_cpus=1, object_store_memory=80_000_000) for _ in range(2)]
    cluster.wait_for_nodes()
    out = tmp_path / "results"
    env = {**os.environ, "PATH": f"{SURVEY.parent}:{os.environ['PATH']}"}
    cmd = [str(SURVEY), "run", "jobs/quickstart.yaml", "--out", str(out),
           "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--address", cluster.address,
           "--set", "grid.dataset=[line]", "--set", "grid.seed=[0,1,2,3]",
           "--set", "data.n=300", "--set", "train.steps=1500", "--set", "train.log_every=50",
           "--set", "resources.checkpoint_every_s=0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        worker_ids = {w.node_id for w in workers}
        seen: set[str] = set()
        deadline = time.time() + 240
        while time.time() < deadline and seen != worker_ids and proc.poll() is None:
            actors = list_actors(address=f"http://127.0.0.1:{port}",
                                 filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
            seen |= {a.node_id for a in actors if a.node_id in worker_ids}
            time.sleep(1)
        assert seen == worker_ids, "the survey did not use both worker nodes"
        time.sleep(3)  # let the trials checkpoint, then lose a node mid-survey
        cluster.remove_node(workers[1])
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        cluster.shutdown()
    assert proc.returncode == 0, output[-3000:]
    fits = pd.read_parquet(out / "quickstart" / "fits")
    assert len(fits) == 4 and fits["fit_id"].is_unique
    assert set(fits["status"]) == {"ok"}
    assert (fits["steps"] == 1500).all()
