"""A survey uses the worker nodes that join a cluster after it started, as an autoscaler's do."""

from __future__ import annotations

import time

import pandas as pd
import pytest


def _most_at_once(fits: pd.DataFrame) -> int:
    """The most fits whose [started_at, finished_at] spans hold one instant."""
    spans = list(zip(fits["started_at"], fits["finished_at"], strict=True))
    return max(sum(a <= start < b for a, b in spans) for start, _ in spans)


def test_most_at_once_counts_overlapping_spans():
    t = pd.to_datetime([0, 1, 2, 3, 4, 5], unit="s", utc=True)
    apart = pd.DataFrame({"started_at": [t[0], t[2], t[4]], "finished_at": [t[1], t[3], t[5]]})
    together = pd.DataFrame({"started_at": [t[0], t[1], t[2]], "finished_at": [t[5]] * 3})
    assert _most_at_once(apart) == 1
    assert _most_at_once(together) == 3


@pytest.mark.slow
def test_survey_runs_fits_at_once_on_workers_that_join_after_it_started(
    head_cluster, quickstart_on
):
    from ray.util.state import list_placement_groups

    # Like cluster.yaml: a head that trains nothing (0 CPUs) and no workers at the start.
    proc, fits_dir = quickstart_on(
        head_cluster, "grid.dataset=[line]", "grid.seed=[0,1,2,3,4,5]", "data.n=300",
        "train.steps=1200", "train.log_every=100")
    # The survey has started when Tune asks for room for a trial that nothing offers.
    deadline = time.time() + 180
    waiting = []
    while time.time() < deadline and not waiting and proc.poll() is None:
        waiting = list_placement_groups(address=head_cluster.dashboard,
                                        filters=[("state", "=", "PENDING")],
                                        raise_on_missing_output=False)
        time.sleep(1)
    assert waiting, "the survey never asked for a trial's resources"
    # Two workers of two CPUs join: four one-CPU trials fit at once.
    for _ in range(2):
        head_cluster.add_node(num_cpus=2, object_store_memory=80_000_000)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    fits = pd.read_parquet(fits_dir)
    assert len(fits) == 6 and set(fits["status"]) == {"ok"}
    assert fits["started_at"].notna().all()
    assert _most_at_once(fits) >= 3, fits[["fit_id", "started_at", "finished_at"]]
