"""Readout rules on constructed spectra."""

from __future__ import annotations

import pytest

from mflow.config import FitSpec
from mflow.fit import read_dimension
from mflow.readout import (
    DimensionReadout,
    SpectrumReadout,
    estimate_dimension,
    gap_rule,
    log_gap_at,
    readout_cut,
    readout_floor,
    threshold_rule,
)

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
        SpectrumReadout("elbow")


@pytest.mark.parametrize(
    ("spectrum", "message"),
    [([], "non-empty"), ([1.0, float("nan")], "NaN"), ([0.1, 1.0], "descending")],
)
def test_bad_spectra_are_refused(spectrum, message):
    with pytest.raises(ValueError, match=message):
        threshold_rule(spectrum, FLOOR)


def test_spectrum_readout_reads_the_dimension_and_its_gap():
    readout = SpectrumReadout("gap", floor=FLOOR)
    reading = readout.read([1.0, 0.5, 1e-9])
    assert reading.dimension == 2 and reading.gap > 5
    assert readout.read([1.0, 1e-9]).dimension == 1  # reads each spectrum afresh
    threshold = SpectrumReadout("threshold", floor=FLOOR, params={"threshold": 1e4})
    assert threshold.read([2.0, 0.5, 1e-9]).dimension == 1  # only 2.0 is above 1e4 * floor


def test_the_old_name_still_works_and_says_it_is_deprecated():
    with pytest.warns(DeprecationWarning, match="SpectrumReadout"):
        readout = DimensionReadout("gap", floor=FLOOR)
    assert readout.fit([1.0, 0.5, 1e-9]) is readout
    assert readout.dimension_ == 2 and readout.gap_ > 5


def test_the_fit_floor_and_cut_are_read_from_the_spec():
    spec = FitSpec().replace(prior={"sigma2": 1e-6}, train={"noise_floor": 0.02},
                             readout={"threshold": 10.0})
    assert readout_floor(spec) == pytest.approx(1e-6 + 4e-4)
    assert readout_cut(spec) == pytest.approx(10 * (1e-6 + 4e-4))
    # the fit's own readout reads against that cut (4.01e-3): 5e-3 is above it, 3e-3 below
    assert read_dimension(spec, (1.0, 5e-3, 3e-3)) == 2
