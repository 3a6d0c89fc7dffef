"""Data-parallel fits (``resources.workers``): Ray Train workers on a local multi-node cluster
give the one-process fit's spectrum, and a fit whose worker is killed continues from its
checkpoint."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from pipelines.job import JobError, parse_job

# Agreement of a data-parallel fit with the one-process fit of the same global batch, in float64
# after 300 steps: the runs differ only in the order of floating-point sums (about 1e-14 here).
# Training amplifies such differences about tenfold every 50 steps after step 250 (a one-process
# fit run with another summation order would drift the same way), so the comparison is made on a
# short fit; the resumed fit is compared by what it reads.
RTOL = 1e-9
STEPS = 300


def _job(**resources):
    return {"name": "dp", "data": {"dataset": "sine"}, "resources": resources}


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"workers": 0}, "resources.workers: must be >= 1, got 0"),
        ({"workers": 2.5}, "resources.workers: expected an integer, got 2.5"),
        ({"workers": "two"}, "resources.workers: expected an integer, got 'two'"),
        ({"workers": 2, "pack": "auto"}, "resources.pack: 'auto' with resources.workers: 2"),
        ({"workers": 2, "pack": 4}, "resources.pack: 4 with resources.workers: 2"),
        ({"workers": 2, "gpu": 0.5}, "resources.gpu: 0.5 with resources.workers: 2"),
        ({"gpu": 2}, "resources.gpu: 2 asked for; a trial's process uses one GPU at most"),
    ],
)
def test_workers_are_validated_with_a_message_naming_the_key(resources, expected):
    with pytest.raises(JobError) as caught:
        parse_job(_job(**resources))
    assert str(caught.value).startswith(expected)
    if "gpu: 2" in expected:
        assert "resources.workers" in str(caught.value)  # says what to do instead


def test_workers_default_to_one_and_take_whole_gpus():
    assert parse_job(_job()).resources.workers == 1
    resources = parse_job(_job(workers=4, gpu=1)).resources
    assert (resources.workers, resources.gpu, resources.pack) == (4, 1.0, 1)


# One process of a two-process group (gloo): trains the fit as a ShardedTrainer and writes its
# spectrum and a digest of its weights.
_RANK = """
import hashlib, json, os, sys
import torch, torch.distributed as dist
from mflow.config import FitSpec
from pipelines.execution.parallel import ShardedTrainer
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method=sys.argv[1], rank=int(sys.argv[2]), world_size=2)
trainer = ShardedTrainer(FitSpec.from_dict(json.loads(sys.argv[3])))
result = trainer.run()[0]
digest = hashlib.sha256()
for name, value in sorted(trainer.params.items()):
    digest.update(value.detach().double().numpy().tobytes())
with open(sys.argv[4], "w") as f:
    json.dump({"eigenvalues": result.eigenvalues, "steps": result.steps,
               "device": result.device, "weights": digest.hexdigest()}, f)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_shards_of_the_closed_form_prior_follow_the_one_process_fit(tmp_path):
    """Without Ray: two gloo processes train a fit with the closed-form prior, whose second
    moment is taken over the codes of the whole batch; both hold the same weights, bit for bit,
    and read the one-process spectrum."""
    import subprocess
    import sys

    from mflow.config import DataSpec, FitSpec
    from mflow.fit import fit

    spec = FitSpec(data=DataSpec("sine", n=500)).replace(
        train={"steps": 200, "log_every": 50, "dtype": "float64", "prior_update": "moment"})
    init = f"file://{tmp_path}/rendezvous"
    outs = [tmp_path / f"rank{r}.json" for r in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", _RANK, init, str(r), spec.to_json(),
                               str(outs[r])], stderr=subprocess.PIPE, text=True)
             for r in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    ranks = [json.loads(out.read_text()) for out in outs]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # every process took the same steps
    assert ranks[0]["eigenvalues"] == ranks[1]["eigenvalues"]
    assert ranks[0]["device"] == "2 x cpu" and ranks[0]["steps"] == 200
    reference = fit(spec)
    assert ranks[0]["eigenvalues"] == pytest.approx(list(reference.eigenvalues), rel=RTOL)


def test_the_batch_entropy_term_is_refused_naming_the_key(tmp_path):
    import torch.distributed as dist

    from mflow.config import DataSpec, FitSpec
    from pipelines.execution.parallel import ShardedTrainer

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0,
                            world_size=1)
    try:
        spec = FitSpec(data=DataSpec("sine", n=300))
        assert ShardedTrainer(spec).world == 1
        with pytest.raises(ValueError, match="prior.entropy_weight: 0.1 with resources.workers"):
            ShardedTrainer(spec.replace(prior={"entropy_weight": 0.1}))
    finally:
        dist.destroy_process_group()


def _add_workers(cluster, count: int = 2) -> list:
    nodes = [cluster.add_node(num_cpus=1, object_store_memory=80_000_000) for _ in range(count)]
    cluster.wait_for_nodes()
    return nodes


def _one_row(proc, fits_dir: Path) -> pd.Series:
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    fits = pd.read_parquet(fits_dir)
    assert len(fits) == 1, fits
    return fits.iloc[0]


def _one_process_fit(row: pd.Series):
    from mflow.config import FitSpec
    from mflow.fit import fit

    return fit(FitSpec.from_dict(json.loads(row["config"])))


@pytest.mark.slow
def test_two_workers_give_the_one_process_spectrum(head_cluster, quickstart_on):
    _add_workers(head_cluster)
    proc, fits_dir = quickstart_on(
        head_cluster, "grid.dataset=[sine]", "grid.seed=[0]", "data.n=500",
        f"train.steps={STEPS}", "train.log_every=50", "train.dtype=float64",
        "resources.workers=2", "resources.checkpoint_every_s=0")
    row = _one_row(proc, fits_dir)
    assert row["status"] == "ok" and row["steps"] == STEPS
    assert row["device"] == "2 x cpu"  # trained by two processes
    reference = _one_process_fit(row)
    assert reference.steps == STEPS
    ours, theirs = list(row["eigenvalues"]), list(reference.eigenvalues)
    worst = max(abs(a - b) / abs(b) for a, b in zip(ours, theirs, strict=True))
    print(f"data-parallel vs one-process spectrum: max relative difference {worst:.1e}")
    assert worst <= RTOL, (ours, theirs)
    assert row["id_estimate"] == reference.id_estimate == 1


def _latest_train_step(tune_dir: Path) -> int:
    """The step of the newest Train checkpoint in any trial folder (-1 if none)."""
    steps = [-1]
    for meta in tune_dir.glob("*/*/checkpoint_train_*/meta.json"):
        try:
            steps.append(int(json.loads(meta.read_text())["step"]))
        except (OSError, ValueError, KeyError):
            continue  # being written
    return max(steps)


@pytest.mark.slow
def test_a_killed_worker_continues_from_its_checkpoint(head_cluster, quickstart_on):
    from ray.util.state import list_actors

    _add_workers(head_cluster)
    steps = 1500
    proc, fits_dir = quickstart_on(
        head_cluster, "grid.dataset=[sine]", "grid.seed=[0]", "data.n=500",
        f"train.steps={steps}", "train.log_every=50", "resources.workers=2",
        "resources.checkpoint_every_s=0")
    tune_dir = fits_dir.parent / "tune"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and _latest_train_step(tune_dir) < 300:
        time.sleep(0.5)
    killed_at = _latest_train_step(tune_dir)
    assert 300 <= killed_at < steps, f"no checkpoint mid-fit (latest: step {killed_at})"
    workers = list_actors(address=head_cluster.dashboard, raise_on_missing_output=False,
                          filters=[("class_name", "=", "RayTrainWorker"),
                                   ("state", "=", "ALIVE")], detail=True)
    assert len(workers) == 2, workers
    os.kill(workers[0].pid, signal.SIGKILL)
    row = _one_row(proc, fits_dir)
    assert row["status"] == "ok" and row["steps"] == steps
    note = row["note"] or ""
    print(f"killed a worker after the checkpoint at step {killed_at}; note: {note}")
    assert "the worker group restarted after a failure 1 time(s)" in note, note
    resumed = int(note.rsplit("at step ", 1)[1].split()[0].rstrip(",;"))
    # Continued from a checkpoint, not from step 0 (the one the controller had registered when
    # the worker died: the newest on disk, or the one before it).
    assert 0 < resumed < steps
    curve = pd.read_parquet(fits_dir.parent / "curves")
    assert sorted(curve["step"]) == list(range(50, steps + 1, 50))  # each logged step once
    assert row["id_estimate"] == 1  # the sine's dimension, as the uninterrupted fit reads
