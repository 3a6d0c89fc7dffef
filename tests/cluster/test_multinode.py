"""A survey on a three-node Ray cluster on one machine: it spreads, and it survives a lost node."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.support import wait_for


def _checkpointed_steps(tune_dir: Path) -> list[int]:
    """The steps of the trials' checkpoints written so far (finished fits' left out)."""
    steps = []
    for meta in tune_dir.glob("*/*/checkpoint_*/meta.json"):
        try:
            read = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue  # being written
        if not read.get("final"):
            steps.append(int(read["step"]))
    return steps


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

    def both_nodes_train() -> bool:
        actors = list_actors(address=head_cluster.dashboard,
                             filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
        seen.update(a.node_id for a in actors if a.node_id in worker_ids)
        return seen == worker_ids or proc.poll() is not None

    wait_for(both_nodes_train, 240, "trials on both worker nodes", poll_s=1)
    assert seen == worker_ids, "the survey did not use both worker nodes"
    # Lose a node once trials have checkpointed mid-fit: theirs restart from there.
    tune_dir = fits_dir.parent / "tune"
    wait_for(lambda: any(0 < s < 1500 for s in _checkpointed_steps(tune_dir))
             or proc.poll() is not None, 240, "a checkpoint mid-fit")
    assert proc.poll() is None, "the survey ended before a node could be lost"
    head_cluster.remove_node(workers[1])
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    fits = pd.read_parquet(fits_dir)
    assert len(fits) == 4 and fits["fit_id"].is_unique
    assert set(fits["status"]) == {"ok"}
    assert (fits["steps"] == 1500).all()
    # The trial on the lost node was retried (Tune restarts it elsewhere), and counted.
    assert fits["retries"].sum() >= 1, fits[["fit_id", "retries"]]
