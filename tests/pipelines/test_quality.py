"""Known answers of the sample-quality measures (pipelines.analysis.quality), and the table of a
store."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mflow.config import DataSpec
from mflow.datasets import load
from mflow.fit import Trainer
from pipelines.analysis.quality import factor_spearman, off_manifold_distance, quality_table
from pipelines.job import parse_job, plan
from pipelines.results.records import curve_rows, fit_record
from pipelines.results.store import Store

REFERENCE_N = 50_000  # enough for a distance error below 1e-3 on |t| <= 1.5


def _line_points(shift: tuple[float, float]) -> np.ndarray:
    t = np.linspace(-1.5, 1.5, 101)
    return np.stack([t, t], axis=1) + np.asarray(shift)


def test_samples_on_the_sine_curve_are_at_distance_zero():
    t = np.linspace(-1.5, 1.5, 101)
    stats = off_manifold_distance(np.stack([t, np.sin(2 * t)], axis=1), DataSpec("sine"),
                                  REFERENCE_N)
    assert stats["mean"] < 1e-3 and stats["p90"] < 2e-3
    assert stats["samples"] == 101 and stats["nonfinite"] == 0


def test_samples_shifted_off_the_line_are_at_the_shift():
    normal = 0.1 * np.array([1.0, -1.0]) / math.sqrt(2.0)  # 0.1 across the line x2 = x1
    across = off_manifold_distance(_line_points(tuple(normal)), DataSpec("line"), REFERENCE_N)
    assert across["mean"] == pytest.approx(0.1, abs=1e-3)
    assert across["median"] == pytest.approx(0.1, abs=1e-3)
    upward = off_manifold_distance(_line_points((0.0, 0.1)), DataSpec("line"), REFERENCE_N)
    assert upward["mean"] == pytest.approx(0.1 / math.sqrt(2.0), abs=1e-3)


def test_samples_past_the_scurve_edge_are_at_their_overshoot():
    """The S-curve's height is ``x2 in [-1, 1]``: a point of it moved to ``x2 = 1.3`` is 0.3 off."""
    on = load(DataSpec("scurve", n=200, seed=7)).x.astype(np.float64)
    near = off_manifold_distance(on, DataSpec("scurve"), REFERENCE_N)
    assert near["mean"] < 0.03  # a surface: the reference's spacing is about 0.02
    past = on.copy()
    past[:, 1] = 1.3
    assert off_manifold_distance(past, DataSpec("scurve"), REFERENCE_N)["mean"] == pytest.approx(
        0.3, abs=0.02)


def test_a_non_finite_sample_is_infinitely_far():
    samples = _line_points((0.0, 0.0))
    samples[0, 1] = np.inf
    stats = off_manifold_distance(samples, DataSpec("line"), REFERENCE_N)
    assert stats["nonfinite"] == 1 and stats["mean"] == math.inf and stats["median"] < 1e-3


def test_bad_samples_and_datasets_are_refused():
    with pytest.raises(ValueError, match="samples"):
        off_manifold_distance(np.zeros((4, 3)), DataSpec("sine"), REFERENCE_N)
    with pytest.raises(ValueError, match="sphere"):
        off_manifold_distance(np.zeros((4, 3)), DataSpec("sphere", latent_dim=2), REFERENCE_N)


@pytest.fixture(scope="module")
def square():
    return load(DataSpec("fading_square", n=2000, seed=3))


def test_a_projection_equal_to_the_factor_has_rho_one(square):
    index = np.arange(0, 2000, 2)
    grey = square.factors["grey"][index]
    assert factor_spearman(grey[:, None], index, square, "grey") == pytest.approx(1.0)
    assert factor_spearman(-grey, index, square, "grey") == pytest.approx(1.0)
    assert factor_spearman(np.exp(3 * grey), index, square, "grey") == pytest.approx(1.0)


def test_an_unrelated_projection_has_rho_near_zero(square):
    index = np.arange(2000)
    noise = np.random.default_rng(0).standard_normal((2000, 2))
    assert factor_spearman(noise, index, square, "grey") < 0.1


def test_only_the_first_latent_coordinate_counts(square):
    index = np.arange(1000)
    grey = square.factors["grey"][index]
    noise = np.random.default_rng(1).standard_normal(1000)
    assert factor_spearman(np.stack([noise, grey], axis=1), index, square, "grey") < 0.1


def test_bad_factors_and_indices_are_refused(square):
    with pytest.raises(ValueError, match="no factor 't'"):
        factor_spearman(np.zeros((3, 1)), np.arange(3), square, "t")
    with pytest.raises(ValueError, match="index"):
        factor_spearman(np.zeros((3, 1)), np.array([0, 1, 2000]), square, "grey")
    with pytest.raises(ValueError, match="index"):
        factor_spearman(np.zeros((3, 1)), np.arange(2), square, "grey")


def test_quality_table_reads_each_ok_fit_with_arrays(tmp_path: Path):
    """Two stored fits of the sine, one with known-answer arrays, one without arrays."""
    job = parse_job({"name": "qt", "data": {"dataset": "sine", "n": 200}, "grid": {"seed": [0, 1]},
                     "train": {"steps": 0, "batch_size": 50}})
    store = Store(tmp_path, "qt")
    for fit in plan(job):
        result = Trainer(fit.spec).result()
        store.write(fit_record("qt", fit, result), curve_rows("qt", fit.fit_id, result))
    first = plan(job)[0]
    data = load(first.spec.data)
    index = np.arange(0, 200, 4)
    t = np.linspace(-1.5, 1.5, 50)
    store.write_artifacts(first.fit_id, {
        "samples": np.stack([t, np.sin(2 * t)], axis=1) + np.array([0.0, 0.2]) * (t > 1.4)[:, None],
        "projection": -data.factors["t"][index, None],
        "index": index,
    })
    table = quality_table(tmp_path, "qt")
    assert list(table["fit_id"]) == [first.fit_id]
    row = table.iloc[0]
    assert row["dataset"] == "sine" and row["seed"] == 0
    assert row["spearman_t"] == pytest.approx(1.0)
    assert row["off_median"] < 2e-3 and 0.0 < row["off_mean"] < 0.2
    with pytest.raises(FileNotFoundError, match="nothing"):
        quality_table(tmp_path, "nothing")
