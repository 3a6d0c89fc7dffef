"""Readout rules on constructed spectra."""

from __future__ import annotations

import pytest

from mflow.readout import DimensionReadout, estimate_dimension, gap_rule, log_gap_at, threshold_rule

FLOOR = 1e-4


@pytest.mark.parametrize(
    ("spectrum", "expected"),
    [
        ([3.0, 1e-6], 1),
        ([2.0, 0.5, 1e-7], 2),
        ([2.0, 0.5, 0.2, 0.1, 1e-8, 1e-9, 1e-9], 4),
        ([1.0, 1.0, 1.0], 3),
        ([1e-7, 1e-8], 0),
        ([5e-3, 1e-6], 1),  # just above 10 sigma2
        ([5e-4, 1e-6], 0),  # just below
    ],
)
def test_threshold_rule(spectrum, expected):
    assert threshold_rule(spectrum, FLOOR) == expected
    assert estimate_dimension(spectrum, FLOOR, "threshold") == expected


@pytest.mark.parametrize(
    ("spectrum", "expected"),
    [
        ([3.0, 1e-6], 1),
        ([2.0, 0.5, 1e-7], 2),
        ([2.0, 0.5, 0.2, 0.1, 1e-8, 1e-9, 1e-9], 4),
        ([1.0, 1.0, 1.0], 3),
        # small but clearly separated used eigenvalues: gap finds them, threshold 10 does not
        ([4e-4, 3e-4, 1e-9], 2),
    ],
)
def test_gap_rule(spectrum, expected):
    assert gap_rule(spectrum, FLOOR) == expected


def test_threshold_factor_is_a_parameter():
    assert threshold_rule([5e-3, 1e-6], FLOOR, threshold=100.0) == 0


def test_log_gap_at():
    assert log_gap_at([1.0, 1e-8], FLOOR, 1) == pytest.approx(9.21, abs=0.01)
    assert log_gap_at([1.0, 1e-8], FLOOR, 0) == 0.0


def test_unknown_rule_raises_with_the_known_ones():
    known = r"unknown readout rule 'elbow'; known: \['gap', 'threshold'\]"
    with pytest.raises(ValueError, match=known):
        estimate_dimension([1.0], FLOOR, "elbow")
    with pytest.raises(ValueError, match="unknown readout rule"):
        DimensionReadout("elbow")


@pytest.mark.parametrize(
    ("spectrum", "message"),
    [([], "non-empty"), ([1.0, float("nan")], "NaN"), ([0.1, 1.0], "descending")],
)
def test_bad_spectra_are_refused(spectrum, message):
    with pytest.raises(ValueError, match=message):
        threshold_rule(spectrum, FLOOR)


def test_estimator_wrapper_sets_attributes_and_returns_self():
    readout = DimensionReadout("gap", floor=FLOOR)
    assert readout.fit([1.0, 0.5, 1e-9]) is readout
    assert readout.dimension_ == 2
    assert readout.gap_ > 5
