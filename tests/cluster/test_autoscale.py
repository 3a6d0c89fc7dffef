"""A survey uses the worker nodes that join a cluster after it started, as an autoscaler's do."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.support import wait_for


@pytest.mark.slow
def test_survey_runs_fits_at_once_on_workers_that_join_after_it_started(
    head_cluster, quickstart_on
):
    from ray.util.state import list_actors, list_placement_groups

    # Like cluster.yaml: a head that trains nothing (0 CPUs) and no workers at the start.
    proc, fits_dir = quickstart_on(
        head_cluster, "grid.dataset=[line]", "grid.seed=[0,1,2,3,4,5]", "data.n=300",
        "train.steps=1200", "train.log_every=100")
    # The survey has started when Tune asks for room for a trial that nothing offers.
    waiting = []

    def asks_for_room() -> bool:
        waiting[:] = list_placement_groups(address=head_cluster.dashboard,
                                           filters=[("state", "=", "PENDING")],
                                           raise_on_missing_output=False)
        return bool(waiting) or proc.poll() is not None

    wait_for(asks_for_room, 180, "a trial waiting for resources", poll_s=1)
    assert waiting, "the survey never asked for a trial's resources"
    # Two workers of two CPUs join: four one-CPU trials fit at once.
    nodes = {head_cluster.add_node(num_cpus=2, object_store_memory=80_000_000).node_id
             for _ in range(2)}
    most = [0]

    def trials_at_once() -> bool:
        actors = list_actors(address=head_cluster.dashboard, raise_on_missing_output=False,
                             filters=[("state", "=", "ALIVE")])
        now = sum(a.node_id in nodes and "ImplicitFunc" in a.class_name for a in actors)
        most[0] = max(most[0], now)
        return most[0] >= 3 or proc.poll() is not None

    wait_for(trials_at_once, 300, "three trials at once on the new workers", poll_s=0.5)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    assert most[0] >= 3, f"at most {most[0]} trials ran at once on the workers that joined"
    fits = pd.read_parquet(fits_dir)
    assert len(fits) == 6 and set(fits["status"]) == {"ok"}
    assert fits["started_at"].notna().all()
