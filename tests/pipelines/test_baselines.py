"""Classical baselines: on the exact points of each group's fits, of known dimension, cached."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mflow.config import DataSpec, FitSpec
from mflow.datasets import DATA_VERSIONS, load
from pipelines.analysis import baselines
from pipelines.analysis.baselines import (
    DANCO_MAX_DIM,
    compute_baselines,
    data_sets,
    estimate,
    points,
    read_baselines,
)
from pipelines.analysis.summary import summarize
from pipelines.job import parse_job, plan
from pipelines.results.records import fit_record
from pipelines.results.store import Store


def stored(tmp_path: Path, name: str, datasets=("line", "scurve"), n: int = 1000):
    """A store whose fits all failed: the baselines need only their configs."""
    raw = {"name": name, "data": {"n": n}, "train": {"noise_floor": 0.02},
           "grid": {"dataset": list(datasets), "seed": [0, 1]}}
    fits = plan(parse_job(raw))
    store = Store(tmp_path / "results", name)
    for fit in fits:
        store.write(fit_record(name, fit, None, error="not run"), [])
    table = store.read_fits()
    return store, table, summarize(table, fit_ids=[f.fit_id for f in fits])


def test_the_points_are_those_the_fits_saw(tmp_path: Path):
    _, table, summary = stored(tmp_path, "pts", datasets=("sine",), n=300)
    configs = list(table["config"])
    items = data_sets(configs)
    assert [item["data"]["seed"] for item in items] == [0, 1]  # one data set per seed
    for item in items:
        spec = next(FitSpec.from_dict(json.loads(c)) for c in configs
                    if json.loads(c)["data"]["seed"] == item["data"]["seed"])
        assert np.array_equal(points(item), load(spec.data).x.astype(np.float64))
    noisy = data_sets(configs, noise="floor")
    x, y = points(noisy[0]), points(noisy[0])
    assert np.array_equal(x, y)  # the added noise is seeded
    clean = points(items[0])
    assert 0.015 < float(np.std(x - clean)) < 0.025  # the fits' noise floor, 0.02
    with pytest.raises(ValueError, match="noise: expected one of none, floor"):
        data_sets(configs, noise="some")


def test_estimators_on_data_of_known_dimension(tmp_path: Path):
    store, table, summary = stored(tmp_path, "known")
    frame = compute_baselines(store, table, summary, estimators=("TwoNN", "MLE", "lPCA"),
                              use_ray=False)
    assert len(frame) == 6 and list(frame["estimator"][:3]) == ["TwoNN", "MLE", "lPCA"]
    got = frame.set_index(["group", "estimator"])
    for group, true in (("dataset=line", 1), ("dataset=scurve", 2)):
        for name in ("TwoNN", "MLE"):
            row = got.loc[(group, name)]
            assert abs(row["estimate"] - true) < 0.25, (group, name, row["estimate"])
            assert list(row["data_seeds"]) == [0, 1] and len(row["estimates"]) == 2
            assert row["estimate_min"] <= row["estimate"] <= row["estimate_max"]
            # the cost is recorded (a field, not a speed check: speed lives in benchmarks/)
            assert np.isfinite(row["wall_s"]) and row["n"] == 1000 and row["noise_std"] == 0
    assert got.loc[("dataset=line", "lPCA"), "estimate"] == 1  # a line is linear
    files = sorted(p.name for p in (Path(store.root) / "baselines").iterdir())
    assert files == sorted(f"{gid}.parquet" for gid in summary["group_id"])
    assert len(read_baselines(store)) == 6


def test_cached_per_group_until_the_data_or_the_estimators_change(tmp_path: Path, monkeypatch):
    store, table, summary = stored(tmp_path, "cache", datasets=("sine",), n=300)
    first = compute_baselines(store, table, summary, estimators=("TwoNN",), use_ray=False)

    calls: list[str] = []

    def counting(name, x):
        calls.append(name)
        return 1.0, 0.01, None

    monkeypatch.setattr(baselines, "estimate", counting)
    again = compute_baselines(store, table, summary, estimators=("TwoNN",), use_ray=False)
    assert calls == [] and again["estimate"].tolist() == first["estimate"].tolist()

    both = compute_baselines(store, table, summary, estimators=("TwoNN", "MLE"), use_ray=False)
    assert calls == ["MLE", "MLE"]  # only the new estimator, on the group's two data sets
    assert both["estimator"].tolist() == ["TwoNN", "MLE"]

    calls.clear()
    compute_baselines(store, table, summary, estimators=("TwoNN",), noise="floor", use_ray=False)
    assert calls == ["TwoNN", "TwoNN"]  # other points: computed again
    noisy = read_baselines(store)  # rows of the clean points are gone from the cache
    assert noisy["estimator"].tolist() == ["TwoNN"] and noisy["noise_std"].tolist() == [0.02]


def test_danco_is_skipped_in_high_dimension_and_unknown_names_raise():
    value, seconds, note = estimate("DANCo", np.zeros((50, DANCO_MAX_DIM + 1)))
    assert value is None and note.startswith("skipped: ambient dimension")
    value, _, note = estimate("TwoNN", np.zeros((20, 3)))  # all points equal: no estimate
    assert value is None and note
    with pytest.raises(ValueError, match="unknown estimator 'PCA'"):
        estimate("PCA", np.zeros((5, 2)))


def test_danco_on_a_surface(tmp_path: Path):
    x = load(DataSpec(dataset="scurve", n=1000)).x.astype(np.float64)
    value, seconds, note = estimate("DANCo", x)
    assert note is None and 1.5 < value < 2.6 and np.isfinite(seconds)  # the cost is recorded


def test_baselines_run_as_ray_tasks(tmp_path: Path, ray_local):
    store, table, summary = stored(tmp_path, "onray", datasets=("sine", "line"), n=300)
    frame = compute_baselines(store, table, summary, estimators=("TwoNN",), use_ray=True)
    assert frame["group"].tolist() == ["dataset=sine", "dataset=line"]
    assert (abs(frame["estimate"] - 1) < 0.3).all()
    assert ray_local.is_initialized()  # a Ray it did not start is left running


def test_data_that_cannot_be_loaded_is_noted_and_not_cached(tmp_path: Path):
    gone = tmp_path / "gone.npy"
    np.save(gone, np.zeros((50, 2)))  # there when the job is planned, gone for the baselines
    raw = {"name": "nodata", "data": {"dataset": "array", "path": str(gone)},
           "grid": {"seed": [0]}}
    fits = plan(parse_job(raw))
    gone.unlink()
    store = Store(tmp_path / "results", "nodata")
    store.write(fit_record("nodata", fits[0], None, error="not run"), [])
    table = store.read_fits()
    frame = compute_baselines(store, table, summarize(table), estimators=("TwoNN",),
                              use_ray=False)
    assert frame["estimate"].isna().all() and "data not loaded" in frame.loc[0, "note"]
    assert read_baselines(store).empty  # tried again next time


def test_cached_estimates_follow_the_loader_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Estimates cached for points a changed loader no longer gives are not reused."""
    sphere = data_sets([FitSpec(data=DataSpec("sphere", latent_dim=2)).to_json()])
    sine = data_sets([FitSpec().to_json()])
    before = baselines._key(sphere, "TwoNN"), baselines._key(sine, "TwoNN")
    monkeypatch.setitem(DATA_VERSIONS, "sphere", 1)
    assert baselines._key(sphere, "TwoNN") != before[0]
    assert baselines._key(sine, "TwoNN") == before[1]  # version 1: the key as it always was
