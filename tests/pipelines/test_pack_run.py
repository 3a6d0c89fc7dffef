"""Packed surveys: small same-shaped fits train together in one trial and are recorded one by one,
as they would be unpacked."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from mflow.config import DataSpec, FitSpec, ModelSpec
from mflow.datasets import Dataset, load
from mflow.fit import fit
from mflow.pack import fit_pack, pack_key
from pipelines.execution import checkpoints, sizing, trials
from pipelines.execution.packing import MAX_PACK, auto_pack_size, make_packs, step_cost
from pipelines.execution.survey import Reporter, run_survey
from pipelines.job import JobError, parse_job, plan
from pipelines.results.store import Store
from tests.support import torch_threads

ray_local = pytest.mark.usefixtures("ray_local")
SEEDS = {"seed": [0, 1, 2]}
LONGER = {"steps": 300, "log_every": 20, "batch_size": 32}


def ids(packs) -> list[list[str]]:
    return [[fit.fit_id for fit in pack] for pack in packs]


# -- which fits share a trial ----------------------------------------------------------------


def test_packs_hold_packable_fits_up_to_the_size(tiny_job):
    fits = plan(tiny_job("p", grid={"dataset": ["sine", "scurve"], "seed": [0, 1, 2, 3, 4]}))
    packs = make_packs(fits, 2)
    assert sorted(len(p) for p in packs) == [1, 1, 2, 2, 2, 2]  # 2-D and 3-D points apart
    assert sorted(i for pack in ids(packs) for i in pack) == sorted(f.fit_id for f in fits)
    for pack in packs:
        assert len({pack_key(fit.spec) for fit in pack}) == 1
        assert [f.fit_id for f in pack] == sorted(f.fit_id for f in pack)
    # fits that differ in more than seeds and noise never share a pack
    other = plan(tiny_job("q", grid={"seed": [0, 1], "train.lr": [1e-3, 2e-3]}))
    assert sorted(len(p) for p in make_packs(other, 8)) == [2, 2]
    assert all(len(p) == 1 for p in make_packs(fits, 1))
    # datasets whose points have one declared shape share packs (each fit keeps its points)
    same = plan(tiny_job("s", grid={"dataset": ["sine", "line"], "seed": [0, 1, 2]}))
    assert [len(p) for p in make_packs(same, 8)] == [6]
    # baseline fits (fixed N(0, I) prior, no spectrum to learn) run one per trial
    baseline = plan(tiny_job("b", grid=SEEDS, prior={"kind": "standard"}))
    assert [len(p) for p in make_packs(baseline, 8)] == [1, 1, 1]


def test_an_earlier_runs_pack_is_formed_again_when_it_fits(tiny_job):
    fits = plan(tiny_job("r", grid={"seed": [0, 1, 2, 3]}))
    old = make_packs(fits, 2)
    resume = {fit.fit_id: "checkpoint-of-the-second-pack" for fit in old[1]}
    assert [f.fit_id for f in old[1]] in ids(make_packs(fits, 3, resume))
    assert ids(make_packs(fits, 3, resume)) != ids(make_packs(fits, 3))
    assert all(len(p) == 1 for p in make_packs(fits, 1, resume))  # too big for pack 1 now
    # a fit that checkpointed alone continues alone: packed with others it could not restore
    alone = {fits[0].fit_id: "checkpoint-of-the-first-fit"}
    assert [fits[0].fit_id] in ids(make_packs(fits, 4, alone))


def test_pack_accepts_a_count_or_auto(tiny_job):
    assert tiny_job("a", resources={"pack": "auto"}).resources.pack == "auto"
    assert tiny_job("b", overrides=("resources.pack=16",)).resources.pack == 16
    with pytest.raises(JobError, match="resources.pack: expected an integer >= 1 or 'auto'"):
        tiny_job("c", resources={"pack": 0})


def test_auto_packs_toy_fits_by_the_dozen_and_runs_image_fits_alone():
    toy = FitSpec(data=DataSpec("sine", n=300))
    cost = step_cost(toy, load(toy.data))
    assert 16 <= auto_pack_size(cost, gpu=False, memory=4e9) <= MAX_PACK
    assert auto_pack_size(cost, gpu=False, memory=cost.memory) == 1  # no memory for two
    images = Dataset("images", torch.rand(100, 1, 28, 28).numpy())
    conv = FitSpec(model=ModelSpec(kind="conv")).replace(train={"batch_size": 64})
    big = step_cost(conv, images)
    assert big.flops > 100 * cost.flops and big.memory > 10 * cost.memory
    assert auto_pack_size(big, gpu=False, memory=4e9) == 1
    assert auto_pack_size(big, gpu=True, memory=80e9) > 16  # a GPU is filled by memory


@ray_local
def test_auto_packs_a_few_toy_fits_into_as_many_packs_as_trials_run_at_once(tiny_job):
    from pipelines.execution.cluster import slots_now

    job = tiny_job("auto", grid={"seed": [0, 1, 2, 3]}, resources={"pack": "auto"})
    sizes = [len(p) for p in sizing.plan_packs(plan(job), job.resources)]
    slots = slots_now(job.resources)
    assert sum(sizes) == 4 and len(sizes) == min(4, slots) and max(sizes) - min(sizes) <= 1
    # one slot: one pack; two: two halves
    assert sizing.fill_slots({"k": 66}, {"k": 4}, 1) == {"k": 4}
    assert sizing.fill_slots({"k": 66}, {"k": 4}, 2) == {"k": 2}


# -- surveys ---------------------------------------------------------------------------------


@ray_local
def test_a_packed_survey_records_every_fit_as_an_unpacked_one_does(
    tmp_path: Path, tracking_uri: str, tiny_job
):
    grid = {"dataset": ["sine", "line"], "seed": [0, 1, 2]}
    out = tmp_path / "results"
    packed = tiny_job("packed", grid=grid, resources={"cpu": 1, "retries": 1, "pack": 4})
    alone = tiny_job("alone", grid=grid)
    assert [len(p) for p in sizing.plan_packs(plan(packed), packed.resources)] == [3, 3]
    assert run_survey(packed, str(out), tracking_uri).counts == {"ok": 6}
    assert run_survey(alone, str(out), None).counts == {"ok": 6}

    rows = pd.read_parquet(out / "packed" / "fits").set_index("fit_id").sort_index()
    reference = pd.read_parquet(out / "alone" / "fits").set_index("fit_id").sort_index()
    assert list(rows.index) == list(reference.index) == sorted(f.fit_id for f in plan(packed))
    assert (rows["steps"] == 100).all() and rows["stop_reason"].isna().all()
    assert list(rows["id_estimate"]) == list(reference["id_estimate"])
    for mine, theirs in zip(rows["eigenvalues"], reference["eigenvalues"], strict=True):
        assert list(mine) == pytest.approx(list(theirs), rel=1e-3)
    curves = pd.read_parquet(out / "packed" / "curves")
    assert sorted(curves.groupby("fit_id")["step"].apply(list).tolist()) == [[50, 100]] * 6

    client = MlflowClient(tracking_uri)
    for fit_id, row in rows.iterrows():
        run = client.get_run(row["mlflow_run_id"])  # one child run per fit
        assert run.data.tags["fit_id"] == fit_id and run.info.status == "FINISHED"
        assert "mlflow.parentRunId" in run.data.tags
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [50, 100]
    assert not (out / "packed" / "tune").exists()  # the packs' checkpoints are pruned


class Killer(trials.FitEvents):
    """Kills the pack's worker when the first fit reports step 40 (the checkpoint of step 20
    is then the one a restart continues from)."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, int]] = []
        self.retries: list[tuple[str, str]] = []
        self.results: dict[str, tuple] = {}

    def progress(self, fit_id, metrics):
        self.steps.append((fit_id, metrics["step"]))
        if metrics["step"] == 40 and not hasattr(self, "killed"):
            self.killed = True
            os.kill(metrics["pid"], signal.SIGKILL)

    def retrying(self, fit_id, error, attempt):
        self.retries.append((fit_id, error))

    def finished(self, fit_id, result, retries):
        self.results[fit_id] = (result, retries)

    def failed(self, fit_id, error, detail, retries):
        raise AssertionError(f"fit failed: {error}")


@ray_local
def test_a_killed_pack_trial_resumes_from_its_checkpoint(tmp_path: Path, tiny_job):
    job = tiny_job("killedpack", grid=SEEDS, train=LONGER,
                   resources={"retries": 2, "checkpoint_every_s": 0, "pack": 3})
    fits = plan(job)
    events = Killer()
    trials.run_trials(fits, job.resources, str(tmp_path / "tune"), "run-1", events)
    assert sorted(events.results) == sorted(f.fit_id for f in fits)
    assert sorted(fit_id for fit_id, _ in events.retries) == sorted(f.fit_id for f in fits)
    for fit_id, (result, retries) in events.results.items():
        assert retries == 1 and result.status == "ok" and result.steps == 300
        assert [p.step for p in result.curve] == list(range(20, 301, 20))
        assert events.steps.count((fit_id, 20)) == 1  # continued, not started again


class Recorder(trials.FitEvents):
    def __init__(self) -> None:
        self.steps: list[int] = []
        self.started_ids: list[str] = []
        self.results = {}

    def started(self, fit_id):
        self.started_ids.append(fit_id)

    def progress(self, fit_id, metrics):
        self.steps.append(metrics["step"])

    def finished(self, fit_id, result, retries):
        self.results[fit_id] = result


@ray_local
def test_a_finished_pack_is_recorded_from_its_checkpoint_without_training(
    tmp_path: Path, tiny_job
):
    job = tiny_job("donepack", grid={"seed": [0, 1]},
                   resources={"checkpoint_every_s": 0, "pack": 2})
    fits = plan(job)
    storage = tmp_path / "tune"
    first = Recorder()
    trials.run_trials(fits, job.resources, str(storage), "run-1", first)
    assert sorted(first.steps) == [50, 50, 100, 100]

    fs = Store(tmp_path, "x").fs
    resume = checkpoints.latest_checkpoints(fs, str(storage), str(storage),
                                            [f.fit_id for f in fits])
    assert len(set(resume.values())) == 1 and len(resume) == 2  # the pack's one checkpoint
    second = Recorder()
    trials.run_trials(fits, job.resources, str(storage), "run-2", second, resume)
    assert second.steps == [] and sorted(second.started_ids) == sorted(resume)
    assert second.results == first.results

    checkpoints.prune_checkpoints(fs, str(storage), [f.fit_id for f in fits])
    assert not storage.exists()


class Interrupt(Reporter):
    """Interrupts the survey run (as Ctrl-C would) once the first fit is recorded."""

    def ended(self, fit, status, estimate, error):
        raise KeyboardInterrupt


@ray_local
def test_an_interrupted_packed_survey_completes_on_rerun(
    tmp_path: Path, tracking_uri: str, tiny_job
):
    job = tiny_job("interpack", grid=SEEDS, train=LONGER,
                   resources={"checkpoint_every_s": 0, "pack": 3})
    out = str(tmp_path / "results")
    store = Store(out, job.name)
    with pytest.raises(KeyboardInterrupt):
        run_survey(job, out, tracking_uri, reporter=Interrupt())
    first = store.statuses()
    assert len(first) == 1  # the pack ended; one of its fits was recorded

    outcome = run_survey(job, out, tracking_uri)
    assert outcome.skipped == 1 and outcome.ran == 2 and outcome.counts == {"ok": 2}
    frame = pd.read_parquet(Path(out) / job.name / "fits")
    assert sorted(frame["fit_id"]) == sorted(f.fit_id for f in plan(job))
    assert set(frame["steps"]) == {300}
    assert not Path(store.root, "tune").exists()


# -- packed and unpacked fits give the same estimates ---------------------------------------


@pytest.fixture
def one_thread():
    with torch_threads(1):
        yield


@pytest.mark.usefixtures("one_thread")
def test_16_sine_fits_packed_and_unpacked_agree_at_a_short_budget():
    base = FitSpec(data=DataSpec("sine", n=300)).replace(
        train={"steps": 200, "log_every": 50, "batch_size": 64, "device": "cpu"}
    )
    specs = [base.replace(train={"seed": s}, data={"seed": s}) for s in range(16)]
    packed = fit_pack(specs)
    for spec, mine in zip(specs, packed, strict=True):
        alone = fit(spec)
        assert mine.status == alone.status == "ok" and mine.steps == alone.steps
        assert mine.id_estimate == alone.id_estimate
        assert mine.eigenvalues == pytest.approx(alone.eigenvalues, rel=1e-2)
        assert [p.estimate for p in mine.curve] == [p.estimate for p in alone.curve]


@pytest.mark.slow
@ray_local
def test_sine_fits_give_the_same_estimates_packed_and_unpacked(tmp_path: Path):
    """The default budget through the survey pipeline: a pack of 2 against one fit per trial
    (2 seeds: at 4 it was CI's longest test, 3-5 minutes; the fast suite packs 16 at a short
    budget, and tests/mflow/test_pack.py follows a packed fit against its lone run)."""
    estimates = {}
    for pack in (2, 1):
        raw = {"name": f"sine-{pack}", "data": {"dataset": "sine", "n": 2000},
               "grid": {"seed": [0, 1]}, "resources": {"cpu": 1, "pack": pack}}
        assert run_survey(parse_job(raw), str(tmp_path), None).counts == {"ok": 2}
        frame = pd.read_parquet(tmp_path / raw["name"] / "fits")
        estimates[pack] = dict(zip(frame["fit_id"], frame["id_estimate"], strict=True))
    assert estimates[2] == estimates[1]
    assert set(estimates[2].values()) == {1}
