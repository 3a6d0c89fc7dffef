"""Known answers: data whose dimension is known by construction, one default configuration.

Every fit here uses ``FitSpec`` defaults except the dataset and its seed: no per-dataset tuning.
"""

from __future__ import annotations

import pytest

from mflow.config import DataSpec, FitSpec
from mflow.fit import fit
from mflow.pack import fit_pack

TOYS = [("line", 1), ("sine", 1), ("scurve", 2)]


@pytest.mark.parametrize(("dataset", "dimension"), TOYS)
def test_default_configuration_reads_the_true_dimension(dataset, dimension):
    result = fit(FitSpec(data=DataSpec(dataset)))
    assert result.status == "ok"
    assert result.true_dim == dimension
    assert result.id_estimate == dimension, result.eigenvalues


@pytest.mark.slow
@pytest.mark.parametrize("datasets", [("line", "sine"), ("scurve",)])
def test_other_seeds_read_the_true_dimension(datasets):
    """Seeds 1 and 2 of each toy, trained as one pack per point shape (a packed fit follows
    its lone run up to rounding: tests/mflow/test_pack.py; packing cuts this test's time
    from about 6 lone fits' to 2 packs')."""
    specs = [FitSpec(data=DataSpec(name, seed=seed)).replace(train={"seed": seed})
             for name in datasets for seed in (1, 2)]
    read = {(s.data.dataset, s.data.seed): r.id_estimate
            for s, r in zip(specs, fit_pack(specs), strict=True)}
    assert read == {(s.data.dataset, s.data.seed): dict(TOYS)[s.data.dataset] for s in specs}
