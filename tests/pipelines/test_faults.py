"""Faults, with real processes: a killed driver, a killed trial worker, a diverging fit, a crash
mid-write, MLflow unreachable or stopped mid-survey, a results folder that cannot be written.

Nothing is mocked: Ray, MLflow (a SQLite store, or a real ``mlflow server``), the filesystem
and the ``survey`` command are the real ones. (Already in ``test_survey_run.py``, and not
repeated here: a trial killed inside ``trials.run_trials`` continues from its checkpoint; a
survey interrupted in the driver completes on rerun; a bogus tracking URI still writes Parquet.)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from pipelines.cli import main
from pipelines.execution import checkpoints, cluster
from pipelines.execution.survey import Reporter, run_survey
from pipelines.job import parse_job, plan
from pipelines.results.store import Store
from tests.support import descendants, kill_session, wait_for, write_job

BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("MFLOW_RESULTS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # A dead MLflow server must cost the tests seconds: no retries, short timeouts.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.chdir(tmp_path)


def active_runs(uri: str, survey: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(survey)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def runs_by_fit(uri: str, survey: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for run in active_runs(uri, survey):
        if "fit_id" in run.data.tags:
            out.setdefault(run.data.tags["fit_id"], []).append(run)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- 1. the driver killed mid-survey ---------------------------------------------------------


@pytest.mark.slow
def test_a_killed_driver_reruns_to_every_fit_once_and_no_token_leaks(tmp_path: Path):
    """SIGKILL ``survey run`` after its first fit is stored; run it again. Every fit is stored
    once, the files stored before the kill are untouched, MLflow has one run per fit and the
    killed survey run is marked KILLED. Ray's auth token (token mode, as Ray 2.59+ runs a
    local cluster) appears in no output, result, MLflow store or Ray log."""
    raw = {
        "name": "killed-driver",
        "data": {"dataset": "sine", "n": 200},
        "grid": {"dataset": ["sine", "line"], "seed": [0, 1]},
        "train": {"steps": 300, "log_every": 20, "batch_size": 32},
        "resources": {"cpu": 1, "retries": 1, "checkpoint_every_s": 0},
    }
    job_file = write_job(tmp_path, raw)
    planned = sorted(f.fit_id for f in plan(parse_job(raw)))
    out, uri = tmp_path / "results", f"sqlite:///{tmp_path / 'mlflow.db'}"
    fits_dir = out / raw["name"] / "fits"
    token = secrets.token_hex(16)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "RAY_TMPDIR": str(ray_tmp)}
    args = [str(BIN / "survey"), "run", str(job_file), "--out", str(out), "--tracking-uri", uri]
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    try:
        with open(logs[0], "w") as log:
            first = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        try:
            wait_for(lambda: any(fits_dir.glob("*.parquet")) or first.poll() is not None,
                     300, "the first stored fit")
            before = {p.name: (p.stat().st_mtime_ns, p.read_bytes())
                      for p in fits_dir.glob("*.parquet")}
            os.kill(first.pid, signal.SIGKILL)
            assert first.wait(30) == -signal.SIGKILL
        finally:
            with contextlib.suppress(ProcessLookupError):
                first.kill()
            time.sleep(1)
            kill_session(first.pid)
        assert 1 <= len(before) < len(planned), "the kill did not land mid-survey"
        store = Store(out, raw["name"])
        unfinished = [f for f in planned if f"{f}.parquet" not in before]
        assert checkpoints.latest_checkpoints(store.fs, store.tune_path, store.tune_dir, unfinished)

        with open(logs[1], "w") as log:
            second = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    timeout=600)
        printed = logs[1].read_text()
        assert second.returncode == 0, printed
        assert f"{len(before)} done before, {len(planned) - len(before)} to run" in printed

        frame = pd.read_parquet(fits_dir)
        assert sorted(frame["fit_id"]) == planned  # none lost, none twice
        assert set(frame["status"]) == {"ok"} and set(frame["steps"]) == {300}
        for name, (mtime, data) in before.items():
            assert (fits_dir / name).stat().st_mtime_ns == mtime
            assert (fits_dir / name).read_bytes() == data
        curves = pd.read_parquet(out / raw["name"] / "curves")
        for fit_id, steps in curves.groupby("fit_id")["step"]:
            assert sorted(steps) == list(range(20, 301, 20)), fit_id
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
        assert not (out / raw["name"] / "tune").exists()

        by_fit = runs_by_fit(uri, raw["name"])
        assert sorted(by_fit) == planned
        for row in frame.itertuples():
            assert [r.info.run_id for r in by_fit[row.fit_id]] == [row.mlflow_run_id]
        parents = sorted(r.info.status for r in active_runs(uri, raw["name"])
                         if r.data.tags.get("kind") == "survey-run")
        assert parents == ["FINISHED", "KILLED"]

        searched = [*logs, tmp_path / "mlflow.db", *out.rglob("*"), *tmp_path.glob("mlruns/**/*"),
                    *ray_tmp.rglob("*")]
        leaks = [str(p) for p in searched
                 if p.is_file() and not p.is_socket() and token.encode() in p.read_bytes()]
        assert leaks == []
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


# -- 2. a trial's worker killed mid-fit ------------------------------------------------------


class Told(Reporter):
    """Keeps what a survey run tells its user."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.retries: list[str] = []
        self.ended_fits: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def retrying(self, fit, error, attempt) -> None:
        self.retries.append(error)

    def ended(self, fit, status, estimate, error) -> None:
        self.ended_fits.append(fit.fit_id)


def test_a_killed_worker_continues_its_fit_and_it_is_recorded_once(
    tmp_path: Path, tracking_uri: str, tiny_job, ray_local
):
    """SIGKILL the Ray worker that runs a fit once it has checkpointed step 60: Tune restarts
    the trial, which continues from its checkpoint (no checkpoint of step 20 reappears), and
    the fit is stored once, with one MLflow run, its curve whole and unrepeated."""
    job = tiny_job("killed-worker", grid={},
                   train={"steps": 300, "log_every": 20, "batch_size": 32},
                   resources={"retries": 2, "checkpoint_every_s": 0, "pack": 1})
    [fit] = plan(job)
    out = str(tmp_path / "results")
    tune = Path(Store(out, job.name).tune_path)
    seen: list[tuple[bool, int]] = []  # (after the kill?, step) of each checkpoint seen
    killed: list[int] = []
    stop = threading.Event()

    def kill_at_step_60() -> None:
        while not stop.is_set():
            for meta in tune.glob(f"*/{fit.fit_id}/checkpoint_*/meta.json"):
                try:
                    step = json.loads(meta.read_text())["step"]
                except (OSError, ValueError, KeyError):
                    continue
                seen.append((bool(killed), step))
                if not killed and 60 <= step < 300:
                    workers = [pid for pid, cmd in descendants(os.getpid()).items()
                               if cmd.startswith("ray::ImplicitFunc")]
                    for pid in workers:
                        os.kill(pid, signal.SIGKILL)
                    killed.extend(workers or [-1])
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_at_step_60, daemon=True)
    watcher.start()
    told = Told()
    try:
        outcome = run_survey(job, out, tracking_uri, reporter=told)
    finally:
        stop.set()
        watcher.join(10)
    assert killed and -1 not in killed, "no trial worker to kill was found"
    assert len(told.retries) == 1 and outcome.counts == {"ok": 1}
    after = [step for was_killed, step in seen if was_killed]
    assert after and min(after) >= 40  # continued; a restart from scratch checkpoints step 20

    row = pd.read_parquet(Path(out) / job.name / "fits").to_dict("records")
    assert len(row) == 1 and row[0]["status"] == "ok"
    assert row[0]["steps"] == 300 and row[0]["retries"] == 1
    curve = pd.read_parquet(Path(out) / job.name / "curves")
    assert curve["step"].tolist() == list(range(20, 301, 20))
    [run] = runs_by_fit(tracking_uri, job.name)[fit.fit_id]
    assert run.info.run_id == row[0]["mlflow_run_id"] and run.data.tags["retries"] == "1"
    history = MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(20, 301, 20))


# -- 3. a fit that diverges ------------------------------------------------------------------


def test_a_diverging_fit_is_recorded_with_its_step_and_the_survey_carries_on(
    tmp_path: Path, tracking_uri: str, ray_local, capsys
):
    raw = {
        "name": "diverging",
        "data": {"dataset": "sine", "n": 200},
        "grid": {"train.lr": [1e-3, 10.0]},  # lr 10 without clipping: NaN within steps
        "train": {"steps": 100, "log_every": 50, "batch_size": 64, "grad_clip": None},
        "resources": {"cpu": 1, "retries": 0},
    }
    out = tmp_path / "results"
    args = ["run", str(write_job(tmp_path, raw)), "--out", str(out), "--tracking-uri",
            tracking_uri]
    assert main(args) == 0  # divergence is a result, not a failure of the survey
    printed = capsys.readouterr().out

    rows = {r["status"]: r for r in pd.read_parquet(out / "diverging" / "fits").to_dict("records")}
    assert sorted(rows) == ["diverged", "ok"]
    bad = rows["diverged"]
    step = int(bad["diverged_step"])
    assert 0 <= step < 100 and pd.isna(bad["id_estimate"])
    reason = f"loss became NaN or inf at step {step}"
    assert bad["error"] == reason
    assert "2 fits: 1 ok, 1 diverged" in printed
    summary = printed[printed.index("diverged (1):"):]  # the run ends with what diverged, and why
    assert f"{bad['fit_id']}: {reason}" in summary
    run = MlflowClient(tracking_uri).get_run(bad["mlflow_run_id"])
    assert run.data.tags["status"] == "diverged" and run.info.status == "FAILED"


# -- 4. a crash while writing a result file --------------------------------------------------

CRASH_MID_WRITE = """
import json, os, signal, sys
import pyarrow.parquet as pq
from mflow.fit import fit
from pipelines.results import store as store_module
from pipelines.job import parse_job, plan
from pipelines.results.records import curve_rows, fit_record
from pipelines.results.store import Store

job = parse_job(json.loads(sys.argv[1]))
first, second = plan(job)
store = Store(sys.argv[2], job.name)
for item, crash in ((first, False), (second, True)):
    result = fit(item.spec)
    if crash:  # killed after the row's temporary file is written, before its rename
        write = pq.write_table
        def write_then_die(table, where, **kwargs):
            write(table, where, **kwargs)
            if "status" in table.column_names:  # the fits row (curves have no status)
                where.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        store_module.pq.write_table = write_then_die
    store.write(fit_record(job.name, item, result), curve_rows(job.name, item.fit_id, result))
"""


def test_a_crash_mid_write_is_never_seen_and_the_next_run_clears_it(
    tmp_path: Path, tracking_uri: str, ray_local, capsys
):
    raw = {
        "name": "crashed-write",
        "data": {"dataset": "sine", "n": 100},
        "grid": {"seed": [0, 1]},
        "train": {"steps": 10, "log_every": 10, "batch_size": 32},
        "resources": {"cpu": 1, "retries": 0},
    }
    first, second = plan(parse_job(raw))
    out = tmp_path / "results"
    fits_dir = out / raw["name"] / "fits"
    crashed = subprocess.run([sys.executable, "-c", CRASH_MID_WRITE, json.dumps(raw), str(out)],
                             capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    [temp] = [p for p in fits_dir.iterdir() if p.name.startswith(".")]
    assert temp.name.startswith(f".{second.fit_id}.parquet.") and temp.name.endswith(".tmp")
    kept = (fits_dir / f"{first.fit_id}.parquet").read_bytes()

    assert pd.read_parquet(fits_dir)["fit_id"].tolist() == [first.fit_id]  # readers skip it
    assert Store(out, raw["name"]).statuses() == {first.fit_id: "ok"}
    job_file = write_job(tmp_path, raw)
    assert main(["status", str(job_file), "--out", str(out)]) == 0
    assert "2 fits: 1 ok, 1 pending" in capsys.readouterr().out

    assert main(["run", str(job_file), "--out", str(out), "--tracking-uri", tracking_uri]) == 0
    assert "1 done before, 1 to run" in capsys.readouterr().out
    assert not temp.exists() and not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    frame = pd.read_parquet(fits_dir)
    assert sorted(frame["fit_id"]) == sorted([first.fit_id, second.fit_id])
    assert (fits_dir / f"{first.fit_id}.parquet").read_bytes() == kept


# -- 5. MLflow unreachable -------------------------------------------------------------------


def test_unreachable_mlflow_warns_keeps_parquet_whole_and_sync_mlflow_backfills(
    tmp_path: Path, ray_local, capsys
):
    raw = {
        "name": "untracked-http",
        "data": {"dataset": "sine", "n": 200},
        "grid": {"dataset": ["sine", "line"]},
        "train": {"steps": 40, "log_every": 20, "batch_size": 32},
        "resources": {"cpu": 1, "retries": 0},
    }
    job_file = write_job(tmp_path, raw)
    out = tmp_path / "results"
    dead = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    assert main(["run", str(job_file), "--out", str(out), "--tracking-uri", dead]) == 0
    printed = capsys.readouterr().out
    assert f"warning: MLflow at {dead}: ConnectionError: no MLflow server answers" in printed
    assert "2 fits have no MLflow run" in printed
    assert f"survey sync-mlflow untracked-http --out {out} --tracking-uri {dead}" in printed
    frame = pd.read_parquet(out / "untracked-http" / "fits")
    assert len(frame) == 2 and set(frame["status"]) == {"ok"}
    assert frame["mlflow_run_id"].isna().all()

    # Still unreachable: one line, exit 1, nothing changed.
    assert main(["sync-mlflow", "untracked-http", "--out", str(out), "--tracking-uri", dead]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: MLflow at {dead}: ConnectionError")
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert pd.read_parquet(out / "untracked-http" / "fits")["mlflow_run_id"].isna().all()

    uri = f"sqlite:///{tmp_path / 'later.db'}"
    assert main(["sync-mlflow", str(job_file), "--out", str(out), "--tracking-uri", uri]) == 0
    assert "2 fits, 0 already in MLflow, 2 recorded now" in capsys.readouterr().out
    frame = pd.read_parquet(out / "untracked-http" / "fits")
    curves = pd.read_parquet(out / "untracked-http" / "curves")
    client = MlflowClient(uri)
    by_fit = runs_by_fit(uri, "untracked-http")
    for row in frame.itertuples():
        [run] = by_fit[row.fit_id]
        assert run.info.run_id == row.mlflow_run_id and run.info.status == "FINISHED"
        assert run.data.metrics["id_estimate"] == row.id_estimate
        assert run.data.params["train.steps"] == "40"
        parent = client.get_run(run.data.tags["mlflow.parentRunId"])
        assert parent.data.tags["kind"] == "survey-sync"
        history = client.get_metric_history(run.info.run_id, "loss")
        expected = curves[curves["fit_id"] == row.fit_id].sort_values("step")
        assert [m.step for m in history] == expected["step"].tolist()
        assert [m.value for m in history] == pytest.approx(expected["loss"].tolist())

    assert main(["sync-mlflow", "untracked-http", "--out", str(out), "--tracking-uri", uri]) == 0
    assert "2 fits, 2 already in MLflow, 0 recorded now" in capsys.readouterr().out
    assert len(runs_by_fit(uri, "untracked-http")) == 2


@contextlib.contextmanager
def mlflow_server(folder: Path, port: int):
    """A real ``mlflow server`` on 127.0.0.1:``port`` over ``folder``'s store; yields a stop()."""
    log = open(folder / f"server-{port}.log", "w")
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )

    def up() -> bool:
        assert server.poll() is None, (folder / f"server-{port}.log").read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop() -> None:
        if server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)
        kill_session(server.pid)

    try:
        wait_for(up, 180, "mlflow server", poll_s=0.5)
        yield stop
    finally:
        stop()
        log.close()


@pytest.mark.slow
def test_mlflow_server_stopped_mid_survey_then_sync_mlflow_backfills(
    tmp_path: Path, tiny_job, ray_local, capsys, monkeypatch: pytest.MonkeyPatch
):
    """A real MLflow server, stopped once the first fit is recorded: the survey finishes with
    every fit in Parquet and a warning; after a restart, ``sync-mlflow`` records the rest."""
    # A stopped server refuses connections at once; a fresh one on a busy machine may take
    # more than the 2 s the other tests allow to answer its first requests.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    job = tiny_job("server-stopped", grid={"seed": [0, 1, 2]},
                   train={"steps": 40, "log_every": 20, "batch_size": 32},
                   resources={"retries": 0, "max_concurrent": 1})
    out = tmp_path / "results"
    store = Store(out, job.name)

    class StopServerAfterFirstFit(Told):
        def ended(self, fit, status, estimate, error) -> None:
            super().ended(fit, status, estimate, error)
            if len(self.ended_fits) == 1:
                stop()

    port = free_port()
    with mlflow_server(tmp_path, port) as stop:
        told = StopServerAfterFirstFit()
        outcome = run_survey(job, str(out), f"http://127.0.0.1:{port}", reporter=told)
    assert outcome.counts == {"ok": 3} and not outcome.interrupted
    assert any(w.startswith("MLflow: could not record") for w in told.warnings), told.warnings
    frame = store.read_fits()
    assert len(frame) == 3 and set(frame["status"]) == {"ok"}
    assert frame["mlflow_run_id"].notna().sum() == 1  # recorded before the server stopped

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with mlflow_server(tmp_path, port):
        assert main(["sync-mlflow", job.name, "--out", str(out), "--tracking-uri", url]) == 0
        assert "3 fits, 1 already in MLflow, 2 recorded now" in capsys.readouterr().out
        frame = store.read_fits()
        by_fit = runs_by_fit(url, job.name)
        assert sorted(by_fit) == sorted(frame["fit_id"])
        for row in frame.itertuples():
            assert [r.info.run_id for r in by_fit[row.fit_id]] == [row.mlflow_run_id]
            artifacts = {a.path for a in MlflowClient(url).list_artifacts(row.mlflow_run_id)}
            assert "spectrum.png" in artifacts


def test_a_fit_recorded_again_keeps_one_active_mlflow_run(tmp_path: Path, tiny_job, capsys):
    """A fit recorded in MLflow twice (retried, or recorded just before a crash kept it out of
    Parquet) has one active run: the earlier one is moved to MLflow's deleted runs; and
    ``sync-mlflow`` deletes a stray run that a crash left beside the one the row names."""
    from pipelines.results.records import fit_record
    from pipelines.results.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    [fit] = plan(tiny_job("recorded-twice", grid={}))
    tracker = Tracker(uri, "recorded-twice")
    first = tracker.log_fit(fit, None, error="boom")
    second = tracker.log_fit(fit, None, error="boom again")
    assert [r.info.run_id for r in runs_by_fit(uri, "recorded-twice")[fit.fit_id]] == [second]
    assert MlflowClient(uri).get_run(first).info.lifecycle_stage == "deleted"

    out = tmp_path / "results"
    Store(out, "recorded-twice").write(
        fit_record("recorded-twice", fit, None, error="boom again", mlflow_run_id=second), []
    )
    stray = MlflowClient(uri).create_run(tracker.experiment_id, tags={"fit_id": fit.fit_id})
    args = ["sync-mlflow", "recorded-twice", "--out", str(out), "--tracking-uri", uri]
    assert main(args) == 0
    assert "1 already in MLflow, 0 recorded now, 1 duplicate runs deleted" in (
        capsys.readouterr().out)
    assert [r.info.run_id for r in runs_by_fit(uri, "recorded-twice")[fit.fit_id]] == [second]
    assert MlflowClient(uri).get_run(stray.info.run_id).info.lifecycle_stage == "deleted"


# -- 6. a results folder that cannot be written ----------------------------------------------


@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` read-only, for root too (the immutable attribute); skip where neither
    works."""
    folder.chmod(0o555)
    immutable = os.geteuid() == 0 and subprocess.run(
        ["chattr", "+i", str(folder)], capture_output=True
    ).returncode == 0
    try:
        try:
            (folder / "probe").touch()
        except OSError:
            pass
        else:
            (folder / "probe").unlink()
            pytest.skip("cannot make a read-only folder here")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def _no_ray(address=None):
    raise AssertionError("Ray was started")


@pytest.mark.parametrize("case", ["read-only folder", "a file where the folder goes"])
def test_an_unwritable_results_folder_is_refused_before_any_fit(
    tmp_path: Path, tiny_job, monkeypatch: pytest.MonkeyPatch, capsys, case
):
    monkeypatch.setattr(cluster, "init_ray", _no_ray)
    job_file = write_job(tmp_path, tiny_job("unwritable").raw)
    out = tmp_path / "out"
    args = ["run", str(job_file), "--out", str(out)]
    if case == "read-only folder":
        out.mkdir()
        with read_only(out):
            code = main(args)
    else:
        out.write_text("not a folder")
        code = main(args)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith(f"error: results folder {out}/unwritable: not writable (")
    assert len(captured.err.strip().splitlines()) == 1
    assert "Traceback" not in captured.out + captured.err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    assert not out.is_dir() or list(out.iterdir()) == []
