"""``mflow.FlowDimension``: scikit-learn's estimator contract, known answers, and one code path
with a survey fit."""

import inspect
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import mflow
from mflow.config import FitSpec
from mflow.datasets import Dataset
from mflow.datasets.arrays import standardize
from mflow.estimator import PARAMETERS, FlowDimension
from mflow.fit import fit

# A short schedule that reaches its noise floor: enough for the contract and the known answers.
QUICK = {"steps": 200, "log_every": 20, "noise_start": 0.05, "noise_decay_every": 20,
         "device": "cpu"}

# Every check of scikit-learn 1.9's suite passes with a 20-step fit; none is expected to fail
# (check_array_api_input skips itself unless SCIPY_ARRAY_API is set: the flow is torch, not
# the array API). Listed here so that a check that starts failing is seen as a change.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@parametrize_with_checks(
    [FlowDimension(steps=20, log_every=10, device="cpu")],
    expected_failed_checks=lambda _: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_contract(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 20 steps do not settle
        check(estimator)


def test_exported_from_the_package():
    assert mflow.FlowDimension is FlowDimension


def test_arguments_are_the_fitspec_fields_with_their_defaults():
    signature = inspect.signature(FlowDimension).parameters
    assert list(signature) == list(PARAMETERS)
    spec = FitSpec()
    for name, (section, field) in PARAMETERS.items():
        assert signature[name].default == getattr(getattr(spec, section), field), name


def test_fit_spec_maps_each_argument_onto_its_section():
    est = FlowDimension(noise_floor=0.02, couplings=3, prior="standard", threshold=5.0)
    spec = est.fit_spec(100)
    assert (spec.train.noise_floor, spec.model.couplings, spec.prior.kind,
            spec.readout.threshold) == (0.02, 3, "standard", 5.0)
    assert (spec.data.dataset, spec.data.n, spec.train.batch_size) == ("array", 100, 100)


def test_a_bad_argument_is_refused_at_fit_naming_its_field():
    with pytest.raises(ValueError, match="train.lr: must be > 0"):
        FlowDimension(lr=0.0).fit(np.random.default_rng(0).normal(size=(50, 3)))


def _curve(n: int = 500) -> np.ndarray:
    t = np.random.default_rng(0).uniform(-1.0, 1.0, n)
    return np.c_[np.cos(2 * t), np.sin(2 * t), t]


def _plane(n: int = 500) -> np.ndarray:
    rng = np.random.default_rng(1)
    frame = np.linalg.qr(rng.normal(size=(5, 5)))[0][:2]
    return 3.0 + rng.uniform(-1.0, 1.0, (n, 2)) @ frame


@pytest.mark.parametrize(("make", "dim"), [(_curve, 1), (_plane, 2)], ids=["curve", "plane"])
def test_known_answer(make, dim):
    x = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = FlowDimension(**QUICK).fit(x)
    assert (est.dimension_, est.rank_) == (dim, dim)
    assert est.spectrum_.shape == (x.shape[1],) and est.dimension_pw_.shape == (len(x),)
    assert np.median(est.dimension_pw_) == dim  # the model's own count, per point
    codes = est.transform(x)
    assert codes.shape == (len(x), dim)
    # The points lie on the learned manifold: decoding their codes gives them back.
    assert np.abs(est.inverse_transform(codes) - x).max() < 0.1


def test_same_answer_as_a_survey_fit(tmp_path):
    x = _curve(300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = FlowDimension(**QUICK).fit(x)
        # The same spec and points, handed over in memory ...
        data = Dataset("array", standardize(x, "X").astype(np.float32))
        in_memory = fit(est.spec_, data)
        # ... and as a survey trial has them: the spec names a file, its loader reads it.
        np.save(tmp_path / "x.npy", x)
        survey = fit(est.spec_.replace(data={"path": str(tmp_path / "x.npy")}))
    for result in (in_memory, survey):
        assert result.id_estimate == est.dimension_
        assert result.eigenvalues == est.result_.eigenvalues


def test_clone_and_grid_search_in_a_pipeline():
    x = _curve(300)
    est = FlowDimension(**QUICK)
    copy = clone(est).set_params(threshold=10.0)
    assert copy.get_params()["threshold"] == 10.0 and est.threshold == 20.0
    flow = FlowDimension(**{**QUICK, "steps": 60})
    pipe = Pipeline([("scale", StandardScaler()), ("flow", flow)])

    def reads_one(model, X, y=None):
        return -abs(model[-1].dimension_ - 1)

    search = GridSearchCV(pipe, {"flow__threshold": [10.0, 20.0]}, scoring=reads_one, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x)
    assert search.best_estimator_[-1].dimension_ == 1
    assert search.transform(x).shape == (300, 1)


def test_an_unsettled_fit_warns():
    with pytest.warns(ConvergenceWarning, match="did not settle"):
        est = FlowDimension(steps=10, device="cpu").fit(_curve(100))
    assert est.settled_ is False
