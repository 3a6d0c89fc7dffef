"""mflow.local: known answers on points of known dimension, calibration, the headline rule."""

from __future__ import annotations

import numpy as np
import pytest

from mflow.config import DataSpec
from mflow.datasets import load
from mflow.local import (
    LOCAL_RULES,
    calibrate,
    code_dimension,
    filled_directions,
    fills_prior,
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


@pytest.mark.parametrize(("d", "seed"), [(3, 5), (10, 6)])
def test_a_sphere_in_its_own_flat_dimensions_reads_d_not_d_plus_one(d, seed):
    """S^d in R^(d+1): the cube-calibrated MLE reaches d + 1 at d = 10 (no edges look like one
    more dimension); the normal is a direction the points do not fill, so the reading is d."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((1000, d + 1))
    x = g / np.linalg.norm(g, axis=1, keepdims=True)
    assert filled_directions(x) == d
    assert round(local_dimension(x, "mle-cal").value) == d


@pytest.mark.parametrize("seed", [0, 1])
def test_codes_that_fill_the_prior_read_its_whole_rank_however_the_prior_stretches_them(seed):
    """Draws of a prior whose variances differ (as the spread KL leaves them free to) read low
    by the cube calibration; tested against the prior itself they read its rank, and stretching
    them further (the prior with them) changes nothing."""
    rng = np.random.default_rng(seed)
    variances = np.array([9.0, 4.0, 1.0, 0.25] * 5)
    codes = rng.standard_normal((2000, 20)) * np.sqrt(variances)
    assert local_dimension(codes).value < 18.5
    assert code_dimension(codes, variances).value == 20.0
    stretch = rng.uniform(0.2, 5.0, 20)
    assert code_dimension(codes * stretch, variances * stretch**2).value == 20.0


@pytest.mark.parametrize(("name", "d", "ambient"), [("torus", 2, 4), ("sphere", 3, 4)])
def test_codes_on_a_curved_set_inside_the_kept_directions_read_its_own_dimension(name, d, ambient):
    """A torus in its 4 flat directions and S^3 in 4 do not fill them as the prior would: the
    cube calibration of the codes reads d."""
    x = _points(name, d, ambient, n=2000)
    variances = x.var(axis=0)
    assert not fills_prior(x / np.sqrt(variances))
    assert round(code_dimension(x, variances).value) == d


@pytest.mark.parametrize(("name", "d", "fills"),
                         [("hypercube", 10, 10), ("affine", 12, 12), ("torus", 3, 3)])
def test_filled_directions_keeps_full_clouds_and_finds_a_torus_thin_ones(name, d, fills):
    """A cube or a Gaussian in its own d dimensions fills all of them (the test is against a
    cube, which an edge-free cloud exceeds); a flat 3-torus in R^6 fills 3 of its 6."""
    x = _points(name, d, None, seed=8)
    assert filled_directions(x) == fills


def test_a_direction_without_spread_is_not_filled():
    box = np.random.default_rng(3).uniform(size=(1000, 6))
    assert filled_directions(np.c_[box, np.zeros(1000)]) == 6


def test_too_few_points_for_the_fill_test_keep_their_dimension():
    assert filled_directions(reference_cube(30, 40, seed=2)) == 30


def test_calibration_is_bounded_by_the_points_dimension():
    assert calibrate(1e9, lambda m: mle(neighbour_distances(reference_cube(m, 200), 10))[0],
                     upper=3) == 3.0


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
