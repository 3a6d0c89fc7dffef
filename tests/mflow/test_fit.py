"""One fit: checkpoints, divergence, callbacks, the baseline, and the model's uses."""

from __future__ import annotations

import math

import pytest
import torch

from mflow.config import DataSpec, FitSpec
from mflow.fit import Trainer, fit, noise_std

TINY = FitSpec(data=DataSpec("sine", n=300)).replace(train={"steps": 60, "log_every": 20})


def test_fit_returns_plain_data():
    result = fit(TINY)
    assert result.status == "ok" and result.error is None
    assert result.steps == 60
    assert [p.step for p in result.curve] == [20, 40, 60]
    assert len(result.eigenvalues) == 2
    assert list(result.eigenvalues) == sorted(result.eigenvalues, reverse=True)
    assert result.id_estimate in (0, 1, 2) and result.id_rule == "threshold"
    assert (result.n, result.ambient_dim, result.true_dim) == (300, 2, 1)
    assert result.wall_s > 0 and result.device == "cpu"
    assert all(math.isfinite(p.loss) for p in result.curve)


def test_restored_checkpoint_continues_exactly(tmp_path):
    spec = TINY.replace(train={"steps": 80})
    whole = Trainer(spec)
    whole.run()

    first = Trainer(spec)
    first.run(callback=lambda point, t: point.step == 40)  # stop early, as if killed
    assert first.step == 40
    first.save(tmp_path / "ckpt.pt")

    second = Trainer(spec)
    second.restore(tmp_path / "ckpt.pt")
    result = second.run()
    assert result.steps == 80
    for a, b in zip(whole.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [p.loss for p in result.curve] == [p.loss for p in whole.result().curve]


def test_checkpoint_of_another_fit_is_refused():
    state = Trainer(TINY).state_dict()
    with pytest.raises(ValueError, match="different fit spec"):
        Trainer(TINY.replace(train={"seed": 9})).load_state_dict(state)


def test_same_seed_same_result_other_seed_differs():
    a, b = fit(TINY), fit(TINY)
    c = fit(TINY.replace(train={"seed": 1}))
    assert a.eigenvalues == b.eigenvalues
    assert a.eigenvalues != c.eigenvalues


def test_divergence_is_a_status_with_its_step():
    spec = TINY.replace(train={"lr": 1e12, "lr_prior": 1e12, "grad_clip": None})
    result = fit(spec)
    assert result.status == "diverged"
    assert result.diverged_step is not None and 0 <= result.diverged_step < 60
    assert f"step {result.diverged_step}" in result.error
    assert result.id_estimate is None


def test_callback_sees_every_log_and_can_stop():
    seen = []
    result = fit(TINY, callback=lambda point, trainer: seen.append(point.step))
    assert seen == [20, 40, 60] and result.steps == 60
    stopped = fit(TINY, callback=lambda point, trainer: True)
    assert stopped.steps == 20


def test_noise_is_annealed_to_its_floor():
    spec = TINY.train
    values = [noise_std(spec, s) for s in range(0, 5000, 100)]
    assert values[0] == spec.noise_start
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] == spec.noise_floor


def test_baseline_nvp_with_standard_prior_trains():
    spec = TINY.replace(
        model={"volume_preserving": False}, prior={"kind": "standard"}, train={"steps": 200}
    )
    result = fit(spec)
    assert result.status == "ok"
    assert result.curve[-1].loss < result.curve[0].loss
    assert result.eigenvalues == (1.0, 1.0)


def test_entropy_term_option_trains():
    result = fit(TINY.replace(prior={"entropy_weight": 1.0}))
    assert result.status == "ok" and all(math.isfinite(p.loss) for p in result.curve)


def test_trained_model_projects_and_samples():
    trainer = Trainer(TINY)
    trainer.run()
    x = torch.as_tensor(trainer.data.x[:10])
    assert trainer.model.project(x, 1).shape == (10, 1)
    samples = trainer.model.sample(7, torch.Generator().manual_seed(0))
    assert samples.shape == (7, 2) and torch.isfinite(samples).all()


def test_float64_training():
    result = fit(TINY.replace(train={"dtype": "float64", "steps": 20}))
    assert result.status == "ok"


@pytest.mark.parametrize(
    ("section", "change", "message"),
    [
        ("train", {"dtype": "float16"}, "train.dtype"),
        ("train", {"prior_init": "pca"}, "train.prior_init"),
        ("prior", {"kind": "flat"}, "unknown kind"),
        ("train", {"device": "cuda:7"}, "CUDA is not available"),
        ("data", {"dataset": "nope"}, "known: "),
        ("data", {"n": 100}, "fewer than one batch"),
    ],
)
def test_bad_specs_are_named(section, change, message):
    if message == "CUDA is not available" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=message):
        Trainer(TINY.replace(**{section: change}))


def test_a_result_carries_the_rank_and_the_local_dimension_of_its_codes():
    """Issue 16: the estimate is the codes' local dimension rounded, at most the rank of
    A A^T, both kept; read from the weights the fit has (the points of fit_artifacts)."""
    from mflow.fit import local_codes
    from mflow.local import LOCAL_RULE, headline_dimension, local_dimension

    trainer = Trainer(FitSpec(data=DataSpec("scurve", n=400)).replace(train={"steps": 30}))
    result = trainer.run()
    assert result.id_rank is not None and result.id_rank >= 1 and result.local_rule == LOCAL_RULE
    assert result.id_estimate == headline_dimension(result.id_rank, result.local_dim)
    codes, index = local_codes(trainer.model, trainer.x, result.id_rank, 0)
    assert codes.shape == (400, result.id_rank) and list(index) == list(range(400))
    again = local_dimension(codes, LOCAL_RULE)
    assert (again.value, again.spread) == pytest.approx((result.local_dim, result.local_dim_spread))
