"""Packed fits: the same fits as unpacked, kept apart from each other."""

from __future__ import annotations

import pytest
import torch

from mflow.config import DataSpec, FitSpec
from mflow.datasets import load
from mflow.fit import fit
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
        assert result.eigenvalues == pytest.approx(alone.eigenvalues, rel=1e-3)
        assert [p.step for p in result.curve] == [p.step for p in alone.curve]
        assert result.curve[0].loss == pytest.approx(alone.curve[0].loss, rel=1e-4)


def test_noise_floor_may_differ_within_a_pack():
    # noise_start below both floors: each fit trains at its own floor from the first step
    specs = [BASE.replace(train={"noise_floor": f, "noise_start": 1e-3}) for f in (0.01, 0.05)]
    assert pack_key(specs[0]) == pack_key(specs[1])
    results = fit_pack(specs)
    assert results[0].curve[-1].noise_std != results[1].curve[-1].noise_std


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
    assert results[1].eigenvalues == pytest.approx(fit(specs[1]).eigenvalues, rel=1e-3)


def test_restored_pack_continues_exactly(tmp_path):
    specs = _seeds(2, BASE.replace(train={"steps": 80}))
    whole = PackTrainer(specs)
    whole.run()
    first = PackTrainer(specs)  # as if killed after the log at step 40
    for _ in range(40):
        first._train_step()
    first._log(0)
    torch.save(first.state_dict(), tmp_path / "pack.pt")
    second = PackTrainer(specs)
    second.load_state_dict(torch.load(tmp_path / "pack.pt", weights_only=True))
    second.run()
    for name, value in whole.params.items():
        assert torch.equal(value, second.params[name]), name


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
