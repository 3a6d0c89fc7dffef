"""A survey on a three-node Ray cluster on one machine: it spreads, and it survives a lost node."""

from __future__ import annotations

import time

import pandas as pd
import pytest


@pytest.mark.slow
def test_survey_spreads_over_nodes_and_survives_losing_one(head_cluster, quickstart_on):
    from ray.util.state import list_actors

    # The head trains nothing (0 CPUs), like cluster.yaml's; two one-CPU workers do.
    workers = [head_cluster.add_node(num_cpus=1, object_store_memory=80_000_000)
               for _ in range(2)]
    head_cluster.wait_for_nodes()
    proc, fits_dir = quickstart_on(
        head_cluster, "grid.dataset=[line]", "grid.seed=[0,1,2,3]", "data.n=300",
        "train.steps=1500", "train.log_every=50", "resources.checkpoint_every_s=0")
    worker_ids = {w.node_id for w in workers}
    seen: set[str] = set()
    deadline = time.time() + 240
    while time.time() < deadline and seen != worker_ids and proc.poll() is None:
        actors = list_actors(address=head_cluster.dashboard,
                             filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
        seen |= {a.node_id for a in actors if a.node_id in worker_ids}
        time.sleep(1)
    assert seen == worker_ids, "the survey did not use both worker nodes"
    time.sleep(3)  # let the trials checkpoint, then lose a node mid-survey
    head_cluster.remove_node(workers[1])
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    fits = pd.read_parquet(fits_dir)
    assert len(fits) == 4 and fits["fit_id"].is_unique
    assert set(fits["status"]) == {"ok"}
    assert (fits["steps"] == 1500).all()
