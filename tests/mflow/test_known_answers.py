"""Known answers: data whose dimension is known by construction, one default configuration.

Every fit here uses ``FitSpec`` defaults except the dataset and its seed: no per-dataset tuning.
"""

from __future__ import annotations

import pytest

from mflow.config import DataSpec, FitSpec
from mflow.fit import fit

TOYS = [("line", 1), ("sine", 1), ("scurve", 2)]


@pytest.mark.parametrize(("dataset", "dimension"), TOYS)
def test_default_configuration_reads_the_true_dimension(dataset, dimension):
    result = fit(FitSpec(data=DataSpec(dataset)))
    assert result.status == "ok"
    assert result.true_dim == dimension
    assert result.id_estimate == dimension, result.eigenvalues


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "dimension"), TOYS)
@pytest.mark.parametrize("seed", [1, 2])
def test_other_seeds_read_the_true_dimension(dataset, dimension, seed):
    spec = FitSpec(data=DataSpec(dataset, seed=seed)).replace(train={"seed": seed})
    assert fit(spec).id_estimate == dimension
