"""Surveys end to end on a real local Ray, with a temporary SQLite MLflow store and results."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mflow.config import FitSpec
from pipelines.cli import main
from pipelines.execution import checkpoints, packing, trials
from pipelines.execution.survey import Reporter, run_survey
from pipelines.job import fit_id, plan
from pipelines.results.store import Store

pytestmark = pytest.mark.usefixtures("ray_local")

COLUMNS = [
    "survey", "fit_id", "dataset", "subset", "class", "noise_floor", "seed", "n", "ambient_dim",
    "status", "error", "id_estimate", "id_rule", "eigenvalues", "steps", "wall_s", "device",
    "mlflow_run_id", "config", "true_dim", "diverged_step", "started_at", "finished_at",
]


def runs_of(uri: str, survey: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(survey)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_tiny_survey_end_to_end_then_a_rerun_does_nothing(
    tmp_path: Path, tracking_uri: str, tiny_job, capsys
):
    job = tiny_job("e2e")
    job_file = tmp_path / "e2e.yaml"
    job_file.write_text(json.dumps(job.raw))  # JSON is YAML
    out = tmp_path / "results"
    args = ["run", str(job_file), "--out", str(out), "--tracking-uri", tracking_uri]

    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "4 fits: 0 done before, 4 to run" in printed, printed
    assert "e2e: estimated dimension" in printed and "by seed" in printed, printed

    frame = pd.read_parquet(out / "e2e" / "fits")
    assert set(COLUMNS) <= set(frame.columns)
    assert len(frame) == 4 and set(frame["status"]) == {"ok"}
    assert sorted(frame["fit_id"]) == sorted(f.fit_id for f in plan(job))
    for row in frame.itertuples():
        assert fit_id(FitSpec.from_dict(json.loads(row.config))) == row.fit_id
        assert list(row.eigenvalues) == sorted(row.eigenvalues, reverse=True)
        assert row.steps == 100 and row.n == 200 and row.ambient_dim == 2
    curves = pd.read_parquet(out / "e2e" / "curves")
    assert sorted(curves.groupby("fit_id")["step"].apply(list).tolist()) == [[50, 100]] * 4

    client = MlflowClient(tracking_uri)
    runs = {r.info.run_id: r for r in runs_of(tracking_uri, "e2e")}
    parents = [r for r in runs.values() if r.data.tags.get("kind") == "survey-run"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    for row in frame.itertuples():
        run = runs[row.mlflow_run_id]  # every row links to an existing MLflow run
        assert run.info.status == "FINISHED"
        assert run.data.tags["fit_id"] == row.fit_id
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.params["train.steps"] == "100"
        assert run.data.metrics["id_estimate"] == row.id_estimate
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [50, 100]
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"spectrum.png"}
    assert not (out / "e2e" / "tune").exists()  # checkpoints of stored fits are pruned

    before = mtimes(out / "e2e")
    assert main(args) == 0
    assert "4 fits: 4 done before, 0 to run" in capsys.readouterr().out
    assert mtimes(out / "e2e") == before
    assert len(runs_of(tracking_uri, "e2e")) == len(runs)


def test_failed_fit_is_recorded_and_retried_by_default(tmp_path: Path, tracking_uri: str,
                                                       tiny_job):
    bad = tmp_path / "bad.npy"  # a fit of it fails as it loads (survey run's check refuses it)
    np.save(bad, np.full((60, 2), np.nan))
    job = tiny_job("failing", data={"dataset": "array", "path": str(bad), "n": 50},
                   grid={}, resources={"retries": 0})
    out = str(tmp_path / "results")
    outcome = run_survey(job, out, tracking_uri)
    assert outcome.counts == {"failed": 1} and not outcome.interrupted
    row = pd.read_parquet(Path(out) / "failing" / "fits").iloc[0]
    assert row["status"] == "failed" and "bad.npy" in row["error"]
    run = MlflowClient(tracking_uri).get_run(row["mlflow_run_id"])
    assert run.info.status == "FAILED" and "bad.npy" in run.data.tags["error"]

    assert run_survey(job, out, tracking_uri, retry_failed=False).ran == 0
    again = run_survey(job, out, tracking_uri)
    assert again.ran == 1 and again.counts == {"failed": 1}
    assert len(pd.read_parquet(Path(out) / "failing" / "fits")) == 1


def test_mlflow_failure_still_writes_parquet(tmp_path: Path, tiny_job):
    job = tiny_job("untracked", grid={"seed": [0]})

    class Warnings(Reporter):
        messages: list[str] = []

        def warn(self, message: str) -> None:
            self.messages.append(message)

    reporter = Warnings()
    out = str(tmp_path / "results")
    outcome = run_survey(job, out, "bogus-scheme://nowhere", reporter=reporter)
    assert outcome.counts == {"ok": 1}
    assert any("MLflow" in m for m in reporter.messages)
    frame = pd.read_parquet(Path(out) / "untracked" / "fits")
    assert frame["mlflow_run_id"].isna().all()


class Killer(trials.FitEvents):
    """Kills a trial's worker process at its second report; records what happens next.

    (Tune registers a report's checkpoint after its callbacks ran, so at the second report the
    first checkpoint is the one a restart continues from.)
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.retries: list[str] = []
        self.results = []

    def progress(self, fit_id, metrics):
        self.steps.append(metrics["step"])
        if len(self.steps) == 2:
            self.killed = True
            os.kill(metrics["pid"], signal.SIGKILL)

    def retrying(self, fit_id, error, attempt):
        self.retries.append(error)

    def finished(self, fit_id, result, retries):
        self.results.append((result, retries))

    def failed(self, fit_id, error, detail, retries):
        raise AssertionError(f"fit failed: {error}")


def test_a_killed_trial_resumes_from_its_checkpoint(tmp_path: Path, tiny_job):
    job = tiny_job("killed", grid={}, train={"steps": 300, "log_every": 20, "batch_size": 32},
                   resources={"retries": 2, "checkpoint_every_s": 0})
    [fit] = plan(job)
    events = Killer()
    trials.run_trials([fit], job.resources, str(tmp_path / "tune"), "run-1", events)
    [(result, retries)] = events.results
    assert retries == 1 and len(events.retries) == 1
    assert result.status == "ok" and result.steps == 300
    assert [p.step for p in result.curve] == list(range(20, 301, 20))
    # After the restart, reports continue from the checkpoint instead of starting again at 20.
    assert events.steps.count(20) == 1


class Interrupt(Reporter):
    """Interrupts the survey run (as Ctrl-C would) once the first fit is recorded."""

    def ended(self, fit, status, estimate, error):
        raise KeyboardInterrupt


def test_an_interrupted_survey_completes_on_rerun(tmp_path: Path, tracking_uri: str, tiny_job):
    job = tiny_job("interrupted", grid={"dataset": ["sine", "line", "scurve"]},
                   train={"steps": 300, "log_every": 20, "batch_size": 32},
                   resources={"checkpoint_every_s": 0})
    out = str(tmp_path / "results")
    store = Store(out, job.name)
    with pytest.raises(KeyboardInterrupt):
        run_survey(job, out, tracking_uri, reporter=Interrupt())
    first = store.statuses()
    assert 1 <= len(first) < 3
    left = checkpoints.latest_checkpoints(store.fs, store.tune_path, store.tune_dir,
                                     [f.fit_id for f in plan(job) if f.fit_id not in first])
    assert left  # the fits in flight left checkpoints to continue from

    outcome = run_survey(job, out, tracking_uri)
    assert outcome.skipped == len(first) and outcome.ran == 3 - len(first)
    frame = pd.read_parquet(Path(out) / job.name / "fits")
    assert sorted(frame["fit_id"]) == sorted(f.fit_id for f in plan(job))  # none lost, none twice
    assert set(frame["status"]) == {"ok"}
    assert not Path(store.root, "tune").exists()
    statuses = sorted(r.info.status for r in runs_of(tracking_uri, job.name)
                      if r.data.tags.get("kind") == "survey-run")
    assert statuses == ["FINISHED", "KILLED"]


class Recorder(trials.FitEvents):
    def __init__(self) -> None:
        self.steps: list[int] = []
        self.results = []

    def progress(self, fit_id, metrics):
        self.steps.append(metrics["step"])

    def finished(self, fit_id, result, retries):
        self.results.append(result)


def test_a_later_run_continues_from_an_earlier_runs_checkpoint(tmp_path: Path, tiny_job):
    job = tiny_job("resumed", grid={}, resources={"checkpoint_every_s": 0})
    [fit] = plan(job)
    storage = tmp_path / "tune"
    first = Recorder()
    trials.run_trials([fit], job.resources, str(storage), "run-1", first)
    assert first.steps == [50, 100]

    store_fs = Store(tmp_path, "x").fs
    resume = checkpoints.latest_checkpoints(store_fs, str(storage), str(storage),
                                            [fit.fit_id, "other"])
    assert list(resume) == [fit.fit_id] and resume[fit.fit_id].startswith(str(storage / "run-1"))
    second = Recorder()
    trials.run_trials([fit], job.resources, str(storage), "run-2", second, resume)
    assert second.steps == []  # nothing left to train: it restored the finished state
    assert second.results[0].curve == first.results[0].curve

    checkpoints.prune_checkpoints(store_fs, str(storage), [fit.fit_id])
    assert not storage.exists()


class Warnings(Reporter):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def warn(self, message: str) -> None:
        self.messages.append(message)


def _leave_checkpoint(store: Store, trial: str, fit_ids: list[str], state: bytes) -> Path:
    """A checkpoint as a killed earlier run leaves it: ``meta.json`` naming ``fit_ids``, and
    ``state`` as its ``state.pt``."""
    left = Path(store.tune_path) / "run-0" / trial / "checkpoint_000000"
    left.mkdir(parents=True)
    meta = {"fit_ids": fit_ids, "step": 50, "final": False}
    (left / checkpoints.META_FILE).write_text(json.dumps(meta))
    (left / checkpoints.STATE_FILE).write_bytes(state)
    return left


def _state_of(specs) -> bytes:
    """The ``state.pt`` bytes of an untrained pack of ``specs``."""
    import io

    import torch

    from mflow.pack import PackTrainer

    buffer = io.BytesIO()
    torch.save(PackTrainer(specs).state_dict(), buffer)
    return buffer.getvalue()


def _refused(store: Store, reporter: Warnings, fit_ids) -> list[str]:
    """Each fit's row says it was not trained, names the flag, and notes why (also said)."""
    rows = store.read_fits().set_index("fit_id")
    notes = []
    for fit_id_ in fit_ids:
        row = rows.loc[fit_id_]
        assert row["status"] == "failed" and pd.isna(row["steps"]), row
        assert checkpoints.RESTART_FLAG in row["error"], row["error"]
        assert f"{fit_id_}: {row['note']}" in reporter.messages
        notes.append(row["note"])
    return notes


@pytest.mark.slow
def test_an_earlier_runs_checkpoint_that_does_not_load_fails_the_fit_unless_allowed(
    tmp_path: Path, tiny_job
):
    job = tiny_job("unusable", grid={})
    [fit] = plan(job)
    out = str(tmp_path / "results")
    store = Store(out, job.name)
    _leave_checkpoint(store, fit.fit_id, [fit.fit_id], b"not a torch file")  # damaged

    reporter = Warnings()
    assert run_survey(job, out, None, reporter=reporter).counts == {"failed": 1}
    [note] = _refused(store, reporter, [fit.fit_id])
    assert note.startswith("could not continue from the checkpoint an earlier run left")

    reporter = Warnings()  # the flag: trained from step 0, and the row says so
    outcome = run_survey(job, out, None, reporter=reporter, restart_unresumable=True)
    assert outcome.counts == {"ok": 1}
    row = store.read_fits().iloc[0]
    assert row["status"] == "ok" and row["steps"] == 100 and pd.isna(row["error"])
    assert row["note"] == f"{note}; trained from step 0 ({checkpoints.RESTART_FLAG})"
    assert f"{fit.fit_id}: {row['note']}" in reporter.messages


@pytest.mark.slow
def test_a_pack_checkpoint_missing_a_members_state_fails_its_fits(tmp_path: Path, tiny_job):
    job = tiny_job("member", grid={"seed": [0, 1]}, resources={"pack": 2})
    fits = plan(job)
    out = str(tmp_path / "results")
    store = Store(out, job.name)
    ids = sorted(f.fit_id for f in fits)
    # The pack's checkpoint names both fits, but holds the state of the first one only.
    first = next(f for f in fits if f.fit_id == ids[0])
    _leave_checkpoint(store, packing.pack_id(ids), ids, _state_of([first.spec]))

    reporter = Warnings()
    assert run_survey(job, out, None, reporter=reporter).counts == {"failed": 2}
    notes = _refused(store, reporter, ids)
    assert all("different fit spec or pack of fits" in note for note in notes), notes


@pytest.mark.slow
def test_a_pack_planned_anew_does_not_continue_silently(tmp_path: Path, tiny_job):
    """An earlier run packed the two fits together; this one trains one fit per trial."""
    job = tiny_job("layout", grid={"seed": [0, 1]}, resources={"pack": 1})
    fits = sorted(plan(job), key=lambda f: f.fit_id)
    out = str(tmp_path / "results")
    store = Store(out, job.name)
    ids = [f.fit_id for f in fits]
    _leave_checkpoint(store, packing.pack_id(ids), ids, _state_of([f.spec for f in fits]))

    reporter = Warnings()
    assert run_survey(job, out, None, reporter=reporter).counts == {"failed": 2}
    notes = _refused(store, reporter, ids)
    assert all("different fit spec or pack of fits" in note for note in notes), notes


def test_a_pack_mixing_earlier_checkpoints_is_a_layout_change():
    resume = {"a": "run-0/pack-2-x/checkpoint_000001", "b": "run-0/pack-2-x/checkpoint_000001"}
    assert trials._layout_change(["a", "b"], resume) is None  # the pack as it was taken
    assert trials._layout_change(["c", "d"], resume) is None  # no checkpoint at all
    why = trials._layout_change(["b", "c"], resume)  # one of the pack's fits and a new one
    assert why is not None and "the pack was planned anew (1 of its 2 fits" in why
    assert "run-0/pack-2-x/checkpoint_000001" in why


@pytest.mark.slow
def test_quickstart_reads_the_toys_right(tmp_path: Path, repo_root: Path):
    """The quickstart job as it is: sine 1, line 1, S-curve 2 (minutes on two cores)."""
    out = tmp_path / "results"
    args = ["run", str(repo_root / "jobs" / "quickstart.yaml"), "--out", str(out),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    assert main(args) == 0
    frame = pd.read_parquet(out / "quickstart" / "fits")
    assert len(frame) == 9 and set(frame["status"]) == {"ok"}
    medians = frame.groupby("dataset")["id_estimate"].median().to_dict()
    assert medians == {"sine": 1, "line": 1, "scurve": 2}


def test_fits_that_ended_before_a_ctrl_c_are_flushed_to_mlflow_and_parquet(
    tmp_path: Path, tracking_uri: str, tiny_job, monkeypatch: pytest.MonkeyPatch
):
    """The driver records in a background thread: Ctrl-C arrives (Tune stops) while the first
    fit's MLflow write is under way and later ones may be queued; all are written before the
    survey run returns, each row linked to its MLflow run."""
    import _thread
    import threading
    import time

    from pipelines.execution import survey
    from pipelines.results.tracking import Tracker

    job = tiny_job("ctrl-c", grid={"seed": [0, 1, 2, 3, 4, 5]},
                   train={"steps": 60, "log_every": 20, "batch_size": 32},
                   resources={"retries": 0})
    heard: list[str] = []  # fits whose end the driver heard, in Tune's loop
    finished, log_fit = survey._Recorder.finished, Tracker.log_fit
    interrupted = threading.Event()

    def hear(self, fit_id, result, retries):
        heard.append(fit_id)
        finished(self, fit_id, result, retries)

    def slow_log_fit(self, *args, **kwargs):
        if not interrupted.is_set():
            interrupted.set()
            _thread.interrupt_main(signal.SIGINT)  # Ctrl-C while this write is queued
        time.sleep(1.0)
        return log_fit(self, *args, **kwargs)

    monkeypatch.setattr(survey._Recorder, "finished", hear)
    monkeypatch.setattr(Tracker, "log_fit", slow_log_fit)
    out = str(tmp_path / "results")
    try:
        outcome = run_survey(job, out, tracking_uri)
    except KeyboardInterrupt:
        outcome = None
    assert interrupted.is_set() and heard
    assert outcome is None or outcome.interrupted
    frame = Store(out, job.name).read_fits()
    assert set(heard) <= set(frame["fit_id"])  # nothing the driver heard of is lost
    runs = {r.info.run_id: r for r in runs_of(tracking_uri, job.name)}
    for row in frame.itertuples():
        assert runs[row.mlflow_run_id].data.tags["fit_id"] == row.fit_id
    parents = [r for r in runs.values() if r.data.tags.get("kind") == "survey-run"]
    assert [r.info.status for r in parents] == ["KILLED"]
