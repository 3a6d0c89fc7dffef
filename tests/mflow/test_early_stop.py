"""Early stop: a fit ends once its estimate and loss have settled at the noise floor."""

from __future__ import annotations

import pytest
import torch

from mflow.config import DataSpec, FitSpec, TrainSpec
from mflow.fit import CurvePoint, Trainer, check_train, early_stop_due, fit
from mflow.pack import PackTrainer, fit_pack

TRAIN = TrainSpec(early_stop_window=3, early_stop_tol=0.05, noise_floor=0.01)
# At its noise floor from the first step, with a lax tolerance: settles within a few logs.
SETTLING = FitSpec(data=DataSpec("sine", n=300)).replace(
    train={"steps": 400, "log_every": 20, "noise_start": 0.05, "noise_floor": 0.05,
           "early_stop_window": 3, "early_stop_tol": 1.0}
)


def curve(*points: tuple[float, float, int]) -> list[CurvePoint]:
    """Points of (loss, noise_std, estimate), 100 steps apart."""
    return [
        CurvePoint(100 * (i + 1), loss, noise, 1e-3, estimate, (1.0, 1e-4))
        for i, (loss, noise, estimate) in enumerate(points)
    ]


def test_rule_needs_a_full_window_of_one_estimate_at_the_floor_with_a_flat_loss():
    settled = curve(*[(-3.0, 0.01, 1)] * 4)
    assert early_stop_due(settled, TRAIN)
    assert not early_stop_due(settled[:3], TRAIN)  # window 3 needs 4 points
    assert not early_stop_due(settled, TrainSpec(early_stop_window=0))  # off
    assert not early_stop_due(curve(*[(-3.0, 0.01, 1)] * 3, (-3.0, 0.01, 2)), TRAIN)
    assert not early_stop_due(curve((-3.0, 0.02, 1), *[(-3.0, 0.01, 1)] * 3), TRAIN)
    # flat: max - min <= tol * max(1, |loss|) = 0.15 here
    assert early_stop_due(curve(
        (-3.0, 0.01, 1), (-3.1, 0.01, 1), (-2.95, 0.01, 1), (-3.0, 0.01, 1)), TRAIN)
    assert not early_stop_due(curve(
        (-3.0, 0.01, 1), (-3.2, 0.01, 1), (-3.3, 0.01, 1), (-3.4, 0.01, 1)), TRAIN)
    # near zero the scale is 1, not |loss|
    assert early_stop_due(curve(*[(0.01, 0.01, 1)] * 3, (0.05, 0.01, 1)), TRAIN)


def test_negative_settings_are_refused():
    with pytest.raises(ValueError, match="early_stop_window"):
        check_train(TrainSpec(early_stop_window=-1))
    with pytest.raises(ValueError, match="early_stop_tol"):
        check_train(TrainSpec(early_stop_tol=-0.1))


def test_a_settled_fit_stops_at_the_first_settled_log_and_says_why():
    result = fit(SETTLING)
    assert result.status == "ok" and result.stop_reason == "early_stop"
    assert result.steps == result.curve[-1].step < SETTLING.train.steps
    assert all(not early_stop_due(result.curve[:i], SETTLING.train)
               for i in range(len(result.curve)))
    # the stop changes nothing before it: the fit without it follows the same curve
    full = fit(SETTLING.replace(train={"early_stop_window": 0}))
    assert full.steps == 400 and full.stop_reason is None
    assert [p.loss for p in full.curve[: len(result.curve)]] == [p.loss for p in result.curve]


def test_an_early_stop_survives_a_checkpoint():
    trainer = Trainer(SETTLING)
    stopped = trainer.run()
    again = Trainer(SETTLING)
    again.load_state_dict(trainer.state_dict())
    result = again.run()  # nothing left to train
    assert result.steps == stopped.steps and result.stop_reason == "early_stop"
    assert result.curve == stopped.curve


def test_packed_fits_stop_on_their_own_as_they_would_alone():
    # fit 0 trains at its floor from step 0; fit 1 anneals its noise first, so it stops later
    specs = [SETTLING, SETTLING.replace(train={"noise_start": 0.08, "seed": 1})]
    packed = fit_pack(specs)
    alone = [fit(spec) for spec in specs]
    assert [r.stop_reason for r in packed] == ["early_stop", "early_stop"]
    assert packed[0].steps < packed[1].steps
    for p, a in zip(packed, alone, strict=True):
        assert p.steps == a.steps and p.id_estimate == a.id_estimate
        # batched and single kernels round differently; the gap grows slowly with the steps
        assert p.eigenvalues == pytest.approx(a.eigenvalues, rel=5e-2)


def test_a_restored_pack_keeps_its_stopped_fits():
    # fit 1 is still annealing its noise when the budget ends: it never stops early
    specs = [SETTLING, SETTLING.replace(train={"seed": 1, "noise_start": 1.0})]
    first = PackTrainer(specs)
    results = first.run()
    assert [r.stop_reason for r in results] == ["early_stop", None]
    state = first.state_dict()
    second = PackTrainer(specs)
    second.load_state_dict(state)
    restored = second.results()
    assert [r.stop_reason for r in restored] == ["early_stop", None]
    assert restored[0].steps == results[0].steps
    assert torch.equal(second.params["prior.weight"], first.params["prior.weight"])
