"""The config's fields declare their bounds and choices once; the library's registries of
what a choice names hold exactly those choices, and ``check_fields`` refuses the rest."""

from __future__ import annotations

import pytest

from mflow.config import (
    DataSpec,
    ModelSpec,
    PriorSpec,
    ReadoutSpec,
    TrainSpec,
    check_fields,
    choices,
)
from mflow.datasets.mnist import FILES as MNIST_FILES
from mflow.fit import DTYPES, check_train
from mflow.flow import FLOW_KINDS
from mflow.model import PRIORS
from mflow.readout import RULES
from mflow.training import PRIOR_UPDATES


@pytest.mark.parametrize(
    ("cls", "name", "registry"),
    [
        (DataSpec, "split", MNIST_FILES),
        (ModelSpec, "kind", FLOW_KINDS),
        (PriorSpec, "kind", PRIORS),
        (TrainSpec, "dtype", DTYPES),
        (TrainSpec, "prior_update", PRIOR_UPDATES),
        (ReadoutSpec, "rule", RULES),
    ],
)
def test_each_choice_is_a_registered_name(cls, name, registry):
    assert set(choices(cls, name)) == set(registry)


@pytest.mark.parametrize(
    ("section", "where", "expected"),
    [
        (TrainSpec(lr=0.0), "train", "train.lr: must be > 0, got 0.0"),
        (TrainSpec(steps=-1), "train", "train.steps: must be >= 0, got -1"),
        (TrainSpec(prior_ema=1.0), "train", "train.prior_ema: must be < 1, got 1.0"),
        (TrainSpec(noise_floor=float("nan")), "train",
         "train.noise_floor: must be a finite number, got nan"),
        (TrainSpec(prior_init="zero"), "train",
         "train.prior_init: expected one of data, identity, got 'zero'"),
        (PriorSpec(sigma2=-1e-6), "prior", "prior.sigma2: must be > 0, got -1e-06"),
        (ReadoutSpec(settle_drift=0.5), "readout", "readout.settle_drift: must be >= 1, got 0.5"),
    ],
)
def test_values_outside_the_declared_bounds_are_refused_by_name(section, where, expected):
    with pytest.raises(ValueError) as info:
        check_fields(section, where)
    assert str(info.value) == expected


def test_the_defaults_and_unset_optional_fields_pass():
    for section, where in [(DataSpec(), "data"), (ModelSpec(), "model"), (PriorSpec(), "prior"),
                           (TrainSpec(), "train"), (ReadoutSpec(), "readout")]:
        check_fields(section, where)
    check_train(TrainSpec(prior_every=1, prior_ema=0.0, grad_clip=None, lr_prior_dim=None))
