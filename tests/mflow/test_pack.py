"""Packed fits: the same fits as unpacked, kept apart from each other."""

from __future__ import annotations

import pytest
import torch

from mflow.config import DataSpec, FitSpec
from mflow.datasets import load
from mflow.fit import Trainer, fit
from mflow.pack import PackTrainer, fit_pack, pack_key

BASE = FitSpec(data=DataSpec("sine", n=300)).replace(train={"steps": 60, "log_every": 20})


def _seeds(n: int, base: FitSpec = BASE) -> list[FitSpec]:
    return [base.replace(train={"seed": s}, data={"seed": s}) for s in range(n)]


def test_packed_fits_follow_their_unpacked_runs():
    specs = _seeds(3)
    packed = fit_pack(specs)
    for spec, result in zip(specs, packed, strict=True):
        alone = fit(spec)
        assert result.status == alone.status == "ok"
        assert result.steps == alone.steps
        assert result.eigenvalues == pytest.approx(alone.eigenvalues, rel=1e-4)
        assert [p.step for p in result.curve] == [p.step for p in alone.curve]
        assert result.curve[0].loss == pytest.approx(alone.curve[0].loss, rel=1e-5)


def test_noise_floor_may_differ_within_a_pack():
    # noise_start below both floors: each fit trains at its own floor from the first step
    specs = [BASE.replace(train={"noise_floor": f, "noise_start": 1e-3}) for f in (0.01, 0.05)]
    assert pack_key(specs[0]) == pack_key(specs[1])
    results = fit_pack(specs)
    assert results[0].curve[-1].noise_std != results[1].curve[-1].noise_std


def test_other_datasets_of_one_shape_pack_together_and_keep_their_own_points():
    specs = [BASE, BASE.replace(data={"dataset": "line"})]  # both 300 points in 2-D
    assert pack_key(specs[0]) == pack_key(specs[1])
    for spec, result in zip(specs, fit_pack(specs), strict=True):
        alone = fit(spec)
        assert result.eigenvalues == pytest.approx(alone.eigenvalues, rel=1e-4)
        assert result.curve[0].loss == pytest.approx(alone.curve[0].loss, rel=1e-5)


def test_fits_that_differ_elsewhere_are_refused():
    with pytest.raises(ValueError, match="fits differ"):
        PackTrainer([BASE, BASE.replace(train={"lr": 0.5})])
    shapes = [load(DataSpec("sine", n=300)), load(DataSpec("scurve", n=300))]
    with pytest.raises(ValueError, match="equal shapes"):
        PackTrainer([BASE, BASE], datas=shapes)


def test_a_diverging_fit_does_not_touch_the_others():
    specs = _seeds(2)
    trainer = PackTrainer(specs)
    with torch.no_grad():  # poison fit 0 only
        trainer.params["prior.weight"][0].fill_(float("nan"))
    results = trainer.run()
    assert results[0].status == "diverged" and results[0].diverged_step == 0
    assert results[1].status == "ok"
    assert results[1].eigenvalues == pytest.approx(fit(specs[1]).eigenvalues, rel=1e-4)


def test_restored_pack_continues_exactly(tmp_path):
    specs = _seeds(2, BASE.replace(train={"steps": 80}))
    whole = PackTrainer(specs)
    whole.run()
    first = PackTrainer(specs)  # as if killed after the log at step 40
    for _ in range(40):
        first._train_step()
    first._log()
    torch.save(first.state_dict(), tmp_path / "pack.pt")
    second = PackTrainer(specs)
    second.load_state_dict(torch.load(tmp_path / "pack.pt", weights_only=True))
    second.run()
    for name, value in whole.params.items():
        assert torch.equal(value, second.params[name]), name


def test_a_state_saved_before_an_optional_field_existed_still_restores():
    """A field added later with default None (data.columns, say) is absent from older states'
    specs: the same fits, so they continue; a field that differs is another fit."""
    import json

    specs = _seeds(2, BASE.replace(train={"steps": 40}))
    first = PackTrainer(specs)
    for _ in range(20):
        first._train_step()
    state = first.state_dict()
    older = []
    for text in state["specs"]:
        spec = json.loads(text)
        assert spec["data"].pop("columns") is None
        older.append(json.dumps(spec, sort_keys=True))
    second = PackTrainer(specs)
    second.load_state_dict({**state, "specs": older})
    assert second.step == 20
    other = PackTrainer(_seeds(2, BASE.replace(train={"steps": 41})))
    with pytest.raises(ValueError, match="different fit spec"):
        other.load_state_dict(state)


def test_callback_stops_one_fit_and_keeps_its_result():
    specs = _seeds(2)
    results = fit_pack(specs, callback=lambda k, point, t: k == 0 and point.step == 20)
    assert results[0].steps == 20 and len(results[0].curve) == 1
    assert results[1].steps == 60 and len(results[1].curve) == 3


def test_member_is_the_fit_as_a_standalone_model():
    specs = _seeds(2)
    trainer = PackTrainer(specs)
    trainer.run()
    for k in range(2):
        model = trainer.member(k)
        assert tuple(model.spectrum().tolist()) == pytest.approx(trainer.spectra()[k], rel=1e-5)
        kept = trainer.artifacts(k)
        assert kept["samples"].shape == (1000, 2) and kept["projection"].shape[0] == 300


def test_fits_of_other_classes_pack_together_but_the_fixed_prior_has_a_flat_spectrum():
    a = FitSpec(data=DataSpec("mnist", classes=(3,))).replace(train={"seed": 1})
    b = FitSpec(data=DataSpec("mnist", classes=(7,))).replace(train={"seed": 2})
    assert pack_key(a) == pack_key(b)
    baseline = BASE.replace(prior={"kind": "standard"}, model={"volume_preserving": False})
    results = fit_pack(_seeds(2, baseline))
    assert [r.status for r in results] == ["ok", "ok"]
    assert results[0].eigenvalues == (1.0, 1.0)


# -- exactness: one loop, frozen members, float64 ------------------------------------------

EXACT = FitSpec(data=DataSpec("sine", n=300)).replace(
    train={"steps": 300, "log_every": 20, "dtype": "float64", "grad_clip": 0.05,
           "early_stop_window": 3, "early_stop_tol": 1.0},
    readout={"settle_drift": 10.0, "settle_margin": 1.0},
)


def _exact_specs() -> list[FitSpec]:
    """Three fits: one at its noise floor from the start (it settles and stops early), two
    annealing from 0.5 (they cannot settle in 300 steps); fit 2 is made to diverge."""
    settles = EXACT.replace(train={"noise_start": 0.05, "noise_floor": 0.05})
    return [settles] + [EXACT.replace(train={"seed": s}, data={"seed": s}) for s in (1, 2)]


def _poison_at(step: int, member: int):
    """A callback that puts NaN into one flow weight of fit ``member`` at ``step``."""
    def callback(k, point, trainer):
        if k == member and point.step == step:
            with torch.no_grad():
                name = next(n for n in trainer.params if not n.startswith("prior."))
                trainer.params[name][k].fill_(float("nan"))
    return callback


def test_a_pack_computes_what_its_fits_compute_alone_in_float64_with_clipping_active():
    specs = _exact_specs()
    pack = PackTrainer(specs)
    clipped = []
    clip = pack._clip

    def watch():  # clipping must be active, or the test would not compare it
        grads = [p.grad for p in pack.params.values() if p.grad is not None]
        norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
        clipped.append(bool(norms[1] > EXACT.train.grad_clip))  # fit 1 trains throughout
        clip()

    pack._clip = watch
    packed = pack.run(_poison_at(100, 2))
    assert sum(clipped) > 0.9 * len(clipped)
    assert packed[0].stop_reason == "early_stop" and packed[0].steps < 300
    assert packed[1].status == "ok" and packed[1].steps == 300
    assert packed[2].status == "diverged" and packed[2].diverged_step == 100
    for k, spec in enumerate(specs):
        alone = Trainer(spec)
        result = alone.pack.run(_poison_at(100, 0) if k == 2 else None)[0]
        assert (result.status, result.steps, result.stop_reason, result.diverged_step) == (
            packed[k].status, packed[k].steps, packed[k].stop_reason, packed[k].diverged_step)
        assert result.eigenvalues == pytest.approx(packed[k].eigenvalues, rel=1e-10, abs=1e-14)
        ours = [p.loss for p in packed[k].curve]
        assert [p.loss for p in result.curve] == pytest.approx(ours, rel=1e-10, nan_ok=True)
        for name, value in alone.pack.params.items():
            torch.testing.assert_close(value[0], pack.params[name][k], rtol=1e-10, atol=1e-13,
                                       equal_nan=True)


def test_stopped_and_diverged_fits_are_frozen():
    pack = PackTrainer(_exact_specs())
    last: dict[int, dict[str, torch.Tensor]] = {}

    def callback(k, point, trainer):
        _poison_at(100, 2)(k, point, trainer)
        last[k] = {name: value[k].clone() for name, value in trainer.params.items()}

    results = pack.run(callback)
    assert results[0].stop_reason == "early_stop" and results[2].status == "diverged"
    for name, value in pack.params.items():  # fit 0: the weights of its last log, its stop
        assert torch.equal(value[0], last[0][name]), name
    # fit 2: poisoned right after its step-100 log, found at the next step: frozen from there
    for name, value in pack.params.items():
        assert torch.equal(value[2], last[2][name], ) or not torch.isfinite(value[2]).all()
    poisoned = [name for name, value in pack.params.items() if not torch.isfinite(value[2]).all()]
    assert len(poisoned) == 1
    assert pack.results()[0].eigenvalues == results[0].eigenvalues
    assert pack.artifacts(0)["projection"].shape[0] == 300


def test_divergence_survives_a_restore(tmp_path):
    specs = _exact_specs()[1:]
    first = PackTrainer(specs)
    for _ in range(100):
        first._train_step()
    with torch.no_grad():
        next(iter(first.params.values()))[1].fill_(float("nan"))
    for _ in range(7):  # the NaN is found on the device at step 100, not yet logged
        first._train_step()
    torch.save(first.state_dict(), tmp_path / "pack.pt")
    second = PackTrainer(specs)
    second.load_state_dict(torch.load(tmp_path / "pack.pt", weights_only=True))
    results = second.run()
    assert results[1].status == "diverged" and results[1].diverged_step == 100
    assert results[0].status == "ok" and results[0].steps == 300
    third = PackTrainer(specs)
    third.load_state_dict(second.state_dict())
    assert third.results()[1].diverged_step == 100 and third.results()[1].steps == 120
