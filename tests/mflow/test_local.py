"""mflow.local: known answers on points of known dimension, calibration, the headline rule."""

from __future__ import annotations

import numpy as np
import pytest

from mflow.config import DataSpec
from mflow.datasets import load
from mflow.local import (
    LOCAL_RULES,
    calibrate,
    headline_dimension,
    local_dimension,
    local_pca_counts,
    mle,
    neighbour_distances,
    reference_cube,
)


def _points(name: str, d: int, ambient: int, n: int = 1000, seed: int = 5) -> np.ndarray:
    return load(DataSpec(name, n=n, latent_dim=d, ambient_dim=ambient, seed=seed)).x


@pytest.mark.parametrize("rule", LOCAL_RULES)
@pytest.mark.parametrize(("name", "d", "ambient"),
                         [("sphere", 2, 3), ("torus", 2, 4), ("hypercube", 3, 6)])
def test_low_dimensional_manifolds_read_right_by_every_rule(rule, name, d, ambient):
    assert round(local_dimension(_points(name, d, ambient), rule).value) == d


def test_calibration_undoes_the_undercount_in_high_dimension():
    """At 1,000 points a 10-cube reads well below 10 by the MLE; calibrated, 10."""
    x = _points("hypercube", 10, 20, seed=7)
    raw, cal = local_dimension(x, "mle"), local_dimension(x, "mle-cal")
    assert raw.value < 9.0 and round(cal.value) == 10
    assert cal.spread == pytest.approx(raw.spread * cal.value / raw.value)


def test_the_codes_of_a_closed_curve_read_one_though_they_need_two_flat_dimensions():
    x = _points("sphere", 1, 2)
    assert round(local_dimension(x, "mle-cal").value) == 1 and headline_dimension(2, 1.1) == 1


def test_calibration_is_bounded_by_the_points_dimension():
    assert calibrate(1e9, lambda x: mle(neighbour_distances(x, 10)), 200, upper=3) == 3.0


def test_one_dimensional_codes_read_one_and_an_unknown_rule_is_refused():
    assert local_dimension(np.arange(10.0)[:, None]).value == 1.0
    with pytest.raises(ValueError, match="no distinct nearest neighbours"):
        local_dimension(np.ones((30, 3)))
    with pytest.raises(ValueError, match="local rule: unknown 'twonn-calibrated'"):
        local_dimension(reference_cube(2, 50), "twonn-calibrated")


def test_local_pca_counts_a_plane_in_space():
    rng = np.random.default_rng(0)
    plane = rng.uniform(size=(400, 2)) @ rng.standard_normal((2, 5))
    assert set(local_pca_counts(plane, 15).tolist()) == {2}


@pytest.mark.parametrize(("rank", "local", "expected"),
                         [(3, 2.4, 2), (3, 2.5, 3), (5, 9.0, 5), (4, 0.2, 1), (0, 3.0, 0)])
def test_headline_is_the_local_dimension_rounded_within_one_and_the_rank(rank, local, expected):
    assert headline_dimension(rank, local) == expected
