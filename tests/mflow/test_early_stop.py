"""Early stop: a fit ends once its estimate and loss have settled at the noise floor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mflow.config import DataSpec, FitSpec, TrainSpec
from mflow.datasets import Dataset
from mflow.fit import (
    CurvePoint,
    Trainer,
    check_train,
    early_stop_due,
    fit,
    fit_settling,
    readout_cut,
)
from mflow.pack import PackTrainer, fit_pack
from mflow.settle import HELDOUT_FALL

SPEC = FitSpec().replace(train={"early_stop_window": 3, "early_stop_tol": 0.05,
                                 "noise_floor": 0.01})
# At its noise floor from the first step, with a lax tolerance and margin: settles within a
# few logs (its dropped eigenvalue is still within a factor 2 of the cut at 400 steps).
SETTLING = FitSpec(data=DataSpec("sine", n=300)).replace(
    train={"steps": 400, "log_every": 20, "noise_start": 0.05, "noise_floor": 0.05,
           "early_stop_window": 3, "early_stop_tol": 1.0},
    readout={"settle_margin": 1.2},
)
CUT = readout_cut(SPEC)  # 20 * (1e-6 + 1e-4)


def curve(*points: tuple, spectrum=(1.0, 1e-4)) -> list[CurvePoint]:
    """Points of (loss, noise_std, estimate[, spectrum]), 100 steps apart."""
    return [
        CurvePoint(100 * (i + 1), p[0], p[1], 1e-3, p[2], p[3] if len(p) > 3 else spectrum)
        for i, p in enumerate(points)
    ]


def test_rule_needs_a_full_window_of_one_estimate_at_the_floor_with_a_flat_loss():
    settled = curve(*[(-3.0, 0.01, 1)] * 4)
    assert early_stop_due(settled, SPEC)
    assert not early_stop_due(settled[:3], SPEC)  # window 3 needs 4 points
    assert not early_stop_due(settled, SPEC.replace(train={"early_stop_window": 0}))  # off
    assert not early_stop_due(curve(*[(-3.0, 0.01, 1)] * 3, (-3.0, 0.01, 2)), SPEC)
    assert not early_stop_due(curve((-3.0, 0.02, 1), *[(-3.0, 0.01, 1)] * 3), SPEC)
    # flat: max - min <= tol * max(1, |loss|) = 0.15 here
    assert early_stop_due(curve(
        (-3.0, 0.01, 1), (-3.1, 0.01, 1), (-2.95, 0.01, 1), (-3.0, 0.01, 1)), SPEC)
    assert not early_stop_due(curve(
        (-3.0, 0.01, 1), (-3.2, 0.01, 1), (-3.3, 0.01, 1), (-3.4, 0.01, 1)), SPEC)
    # near zero the scale is 1, not |loss|
    assert early_stop_due(curve(*[(0.01, 0.01, 1)] * 3, (0.05, 0.01, 1)), SPEC)


def test_curved_data_settle_on_the_local_dimension_while_the_rank_still_falls():
    """Where the codes' local dimension rounds below the rank (a curved manifold the flow is
    still straightening), the estimate is the rounded local dimension: it settles when that
    holds and shows no trend, whatever the rank's cut eigenvalues do."""
    spectrum = (1.0, 0.5, 0.2)  # the rank reads 3 at every point

    def points(*local: float | None) -> list[CurvePoint]:
        return [CurvePoint(100 * (i + 1), -3.0, 0.01, 1e-3, 3, spectrum, local_dim=v)
                for i, v in enumerate(local)]

    judged = fit_settling(SPEC, points(2.0, 2.1, 2.0, 2.05))
    assert judged.settled and judged.drift == pytest.approx(((2.0 * 2.05) / (2.0 * 2.1)) ** -0.5)
    # the third eigenvalue falling through the margin does not matter: the answer is 2
    falling = [CurvePoint(100 * (i + 1), -3.0, 0.01, 1e-3, 3, (1.0, 0.5, v), local_dim=2.0)
               for i, v in enumerate((0.3, 0.1, 0.03, 0.01))]
    assert fit_settling(SPEC, falling).settled
    # the rounded local dimension changed inside the window
    assert not fit_settling(SPEC, points(2.6, 2.4, 2.2, 2.0)).settled
    # a trend that has not yet crossed a rounding boundary: 1.55 -> 2.4 (factor 1.37 > 1.25)
    judged = fit_settling(SPEC, points(1.55, 1.8, 2.2, 2.4))
    assert not judged.settled and judged.drift > 1.25
    # a point without a local dimension reads the rank, 3: not the same estimate
    gap = points(2.0, None, 2.0, 2.0)
    assert not fit_settling(SPEC, gap).settled


def test_rule_needs_still_eigenvalues_clear_of_the_cut():
    def at(*second: float) -> list[CurvePoint]:
        return curve(*[(-3.0, 0.01, 1, (1.0, v)) for v in second])

    assert fit_settling(SPEC, at(1e-4, 1e-4, 1e-4, 1e-4)).settled
    # the first dropped eigenvalue still falling: by a factor 4 over the window, so the
    # geometric means of the halves differ by sqrt(8 / 1.5)
    judged = fit_settling(SPEC, at(4e-4, 2e-4, 1.5e-4, 1e-4))
    assert not judged.settled and judged.drift == pytest.approx((8 / 1.5) ** 0.5)
    # a wander by a factor 2 with no trend is not movement
    judged = fit_settling(SPEC, at(1e-4, 2e-4, 2e-4, 1e-4))
    assert judged.settled and judged.drift == pytest.approx(1.0)
    # still, but within a factor 1.5 (the default margin) of the cut
    judged = fit_settling(SPEC, at(*[0.7 * CUT] * 4))
    assert not judged.settled and judged.margin == pytest.approx(1 / 0.7)
    assert fit_settling(SPEC.replace(readout={"settle_margin": 1.4}), at(*[0.7 * CUT] * 4)).settled
    assert fit_settling(SPEC, at(*[0.6 * CUT] * 4)).settled  # a factor 1.67 clear
    # the kept eigenvalue must clear the cut too
    low = curve(*[(-3.0, 0.01, 1, (1.4 * CUT, 1e-5))] * 4)
    assert not fit_settling(SPEC, low).settled


def test_rule_needs_the_held_out_loss_to_have_stopped_falling():
    def held(*losses: float | None) -> list[CurvePoint]:
        return [CurvePoint(100 * (i + 1), -3.0, 0.01, 1e-3, 1, (1.0, 1e-4), heldout_loss=v)
                for i, v in enumerate(losses)]

    # the training loss is flat; the held-out loss still falls by 0.1 between the halves
    judged = fit_settling(SPEC, held(-2.0, -2.0, -2.1, -2.1))
    assert not judged.settled and judged.heldout_fall == pytest.approx(0.1)
    fall = HELDOUT_FALL * 0.9  # within the rule
    assert fit_settling(SPEC, held(-2.0, -2.0, -2.0 - fall, -2.0 - fall)).settled
    judged = fit_settling(SPEC, held(-2.1, -2.1, -2.0, -2.0))  # rising: learnt all it can
    assert judged.settled and judged.heldout_fall == pytest.approx(-0.1)
    # no held-out points (or not at every point of the window): the rule does not apply
    assert fit_settling(SPEC, held(None, None, None, None)).settled
    assert math.isnan(fit_settling(SPEC, held(-2.0, None, -2.1, -2.1)).heldout_fall)


def test_a_fit_logs_the_held_out_loss_at_the_noise_floor_only():
    rng = np.random.default_rng(0)
    x = np.c_[rng.standard_normal((330, 2)), np.zeros(330)].astype(np.float32)
    spec = FitSpec(data=DataSpec("array", n=300)).replace(
        train={"steps": 300, "log_every": 50, "noise_start": 0.1, "noise_decay": 0.5,
               "noise_decay_every": 50})
    result = fit(spec, Dataset("array", x[:300], heldout=x[300:]))
    at_floor = [p.noise_std <= spec.train.noise_floor for p in result.curve]
    assert any(at_floor) and not all(at_floor)
    for p, floor in zip(result.curve, at_floor, strict=True):
        assert (p.heldout_loss is not None) == floor
        assert p.heldout_loss is None or np.isfinite(p.heldout_loss)
    assert result.settle_heldout_fall is not None or not result.settled
    # without held-out points nothing is logged, and the fit's other numbers are the same
    alone = fit(spec, Dataset("array", x[:300]))
    assert all(p.heldout_loss is None for p in alone.curve)
    assert [p.loss for p in alone.curve] == [p.loss for p in result.curve]


def test_stable_steps_count_back_to_the_last_change():
    points = curve((-3.0, 0.01, 2), (-3.0, 0.01, 1), (-3.0, 0.01, 1), (-3.0, 0.01, 1))
    assert fit_settling(SPEC, points).stable_steps == 200
    assert fit_settling(SPEC, []).settled is False


def test_negative_settings_are_refused():
    with pytest.raises(ValueError, match="early_stop_window"):
        check_train(TrainSpec(early_stop_window=-1))
    with pytest.raises(ValueError, match="early_stop_tol"):
        check_train(TrainSpec(early_stop_tol=-0.1))
    with pytest.raises(ValueError, match="noise_start"):
        check_train(TrainSpec(noise_start=0.0))


def test_a_settled_fit_stops_at_the_first_settled_log_and_says_why():
    result = fit(SETTLING)
    assert result.status == "ok" and result.stop_reason == "early_stop"
    assert result.steps == result.curve[-1].step < SETTLING.train.steps
    assert all(not early_stop_due(result.curve[:i], SETTLING)
               for i in range(len(result.curve)))
    assert result.settled and result.settle_margin >= 1.2
    # the stop changes nothing before it: the fit without it follows the same curve
    full = fit(SETTLING.replace(train={"early_stop_window": 0}))
    assert full.steps == 400 and full.stop_reason is None
    assert [p.loss for p in full.curve[: len(result.curve)]] == [p.loss for p in result.curve]
    # every point at the noise floor carries the codes' local dimension, the last one the
    # fit's own (the same weights, the same points)
    assert all(p.local_dim is not None for p in result.curve)
    assert result.curve[-1].local_dim == pytest.approx(result.local_dim)
    annealed = fit(SETTLING.replace(train={"noise_start": 0.5, "steps": 60,
                                           "early_stop_window": 0}))
    assert [p.local_dim is None for p in annealed.curve] == [
        p.noise_std > SETTLING.train.noise_floor for p in annealed.curve]


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
        # float32: batched and single kernels round differently (float64: see test_pack)
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
