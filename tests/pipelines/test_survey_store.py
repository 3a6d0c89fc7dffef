"""The Parquet store: atomic one-file-per-fit writes, a fixed schema, invisible temp files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mflow.config import FitSpec
from mflow.fit import CurvePoint, FitResult
from pipelines.execution.survey import run_survey
from pipelines.job import Fit, legacy_fit_id, parse_job, plan
from pipelines.results.records import FITS_SCHEMA, curve_rows, fit_record
from pipelines.results.store import Store

REQUIRED = [
    "survey", "fit_id", "dataset", "subset", "class", "noise_floor", "seed", "n", "ambient_dim",
    "status", "error", "id_estimate", "id_rule", "eigenvalues", "steps", "wall_s", "device",
    "mlflow_run_id", "config", "true_dim", "diverged_step", "finished_at",
]


def fits(grid=None):
    raw = {"name": "s", "data": {"dataset": "mnist", "n": 10}, "model": {"kind": "conv"},
           "grid": grid or {"class": [1, 2], "seed": [0, 1]}}
    return plan(parse_job(raw))


def result(status="ok", estimate=1) -> FitResult:
    point = CurvePoint(step=10, loss=-1.0, noise_std=0.01, lr=1e-3, estimate=1,
                       eigenvalues=(2.0, 1e-6))
    return FitResult(
        status=status, error=None if status == "ok" else "boom", steps=20,
        id_estimate=estimate if status == "ok" else None, id_rule="threshold",
        eigenvalues=(2.0, 1e-6), curve=(point, point.__class__(**{**point.__dict__, "step": 20})),
        n=10, ambient_dim=2, true_dim=1, wall_s=0.5, device="cpu",
    )


def write_some(store: Store) -> list:
    planned = fits()
    for i, fit in enumerate(planned):
        res = result() if i % 2 == 0 else None
        record = fit_record("s", fit, res, error=None if res else "ValueError: no data",
                            mlflow_run_id="run" if res else None)
        store.write(record, curve_rows("s", fit.fit_id, res))
    return planned


def test_one_file_per_fit_readable_with_pandas(tmp_path: Path):
    store = Store(tmp_path, "s")
    planned = write_some(store)
    files = sorted(p.name for p in (tmp_path / "s" / "fits").iterdir())
    assert files == sorted(f"{f.fit_id}.parquet" for f in planned)
    frame = pd.read_parquet(tmp_path / "s" / "fits")
    assert set(REQUIRED) <= set(frame.columns)
    assert len(frame) == 4 and set(frame["status"]) == {"ok", "failed"}
    ok = frame[frame["status"] == "ok"].iloc[0]
    assert list(ok["eigenvalues"]) == [2.0, 1e-6]
    assert FitSpec.from_dict(json.loads(ok["config"])).data.dataset == "mnist"
    assert sorted(frame["class"].dropna().astype(int)) == [1, 1, 2, 2]
    curves = pd.read_parquet(tmp_path / "s" / "curves")
    assert len(curves) == 4  # two points for each of the two ok fits, none for failed ones


def test_every_file_has_the_same_fixed_schema(tmp_path: Path):
    store = Store(tmp_path, "s")
    write_some(store)
    for path in (tmp_path / "s" / "fits").iterdir():
        assert pq.read_schema(path).remove_metadata() == FITS_SCHEMA


def test_rewriting_a_fit_replaces_its_row(tmp_path: Path):
    store = Store(tmp_path, "s")
    fit = fits()[0]
    store.write(fit_record("s", fit, None, error="boom"), [])
    store.write(fit_record("s", fit, result()), curve_rows("s", fit.fit_id, result()))
    frame = pd.read_parquet(tmp_path / "s" / "fits")
    assert len(frame) == 1 and frame["status"].tolist() == ["ok"]
    assert store.statuses() == {fit.fit_id: "ok"}


def test_temp_files_are_invisible_to_readers(tmp_path: Path):
    store = Store(tmp_path, "s")
    write_some(store)
    # What a writer killed mid-write leaves behind: a partial file under a temporary name.
    (tmp_path / "s" / "fits" / ".sine-0.parquet.deadbeef.tmp").write_bytes(b"PAR1 partial")
    frame = pd.read_parquet(tmp_path / "s" / "fits")
    assert len(frame) == 4
    assert len(store.statuses()) == 4


def test_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = Store(tmp_path, "s")
    fit = fits()[0]

    def broken(table, where, **kwargs):  # half a file written, then the disk is full
        where.write(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        store.write(fit_record("s", fit, result()), [])
    assert [p for p in (tmp_path / "s").rglob("*") if p.is_file()] == []
    assert store.statuses() == {}


def test_an_empty_store_reads_as_empty(tmp_path: Path):
    store = Store(tmp_path, "nothing")
    assert store.statuses() == {} and not store.exists()
    assert list(store.read_fits().columns) == FITS_SCHEMA.names


def test_store_takes_a_file_uri(tmp_path: Path):
    store = Store(tmp_path.as_uri(), "s")
    write_some(store)
    assert len(store.read_fits()) == 4
    assert store.tune_dir == f"{tmp_path.as_uri()}/s/tune"


def test_a_fit_stored_under_its_old_id_is_found_as_done(tmp_path: Path):
    """Fits stored before ids left out the data folder and the logging interval: a rerun of the
    same job takes them over (renamed to their ids now) instead of training them again."""
    job = parse_job({"name": "s", "data": {"dataset": "sine", "n": 100},
                     "train": {"steps": 20, "log_every": 10}, "grid": {"seed": [0, 1]}})
    planned = plan(job)
    store = Store(tmp_path, "s")
    for fit in planned:
        old = Fit(legacy_fit_id(fit.spec), fit.spec, fit.axes)
        assert old.fit_id != fit.fit_id
        store.write(fit_record("s", old, result()), curve_rows("s", old.fit_id, result()))
        store.write_artifacts(old.fit_id, {"samples": np.zeros((3, 2))})

    outcome = run_survey(job, str(tmp_path), None)  # nothing to run: Ray is not started
    assert outcome.skipped == 2 and outcome.ran == 0
    assert store.statuses() == {fit.fit_id: "ok" for fit in planned}
    assert set(store.read_curves()["fit_id"]) == {fit.fit_id for fit in planned}
    for fit in planned:
        assert store.read_artifacts(fit.fit_id)["samples"].shape == (3, 2)
    names = {p.stem for p in (tmp_path / "s").rglob("*") if p.is_file()}
    assert names == {fit.fit_id for fit in planned}  # the old files are gone
