"""The Jacobian readout: the model's local variances against a direct computation, and the
count against data of known dimension."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mflow.config import DataSpec, FitSpec, ModelSpec, PriorSpec
from mflow.fit import Trainer
from mflow.jacobian import jacobian_dimension, local_variances
from mflow.model import ManifoldFlow


def test_local_variances_are_the_inverse_eigenvalues_of_the_pulled_back_precision() -> None:
    torch.manual_seed(0)
    model = ManifoldFlow.build(ModelSpec(couplings=3), PriorSpec(sigma2=1e-3), (4,)).double()
    with torch.no_grad():
        model.prior.weight.copy_(torch.tril(torch.randn(4, 4, dtype=torch.float64)))
    x = torch.randn(6, 4, dtype=torch.float64)
    got = local_variances(model, x)
    a = torch.tril(model.prior.weight.detach())
    sigma = a @ a.T + 1e-3 * torch.eye(4, dtype=torch.float64)
    for row, point in zip(got, x, strict=True):
        j = torch.autograd.functional.jacobian(lambda p: model.encode(p[None])[0][0], point)
        mu = torch.linalg.eigvalsh(j.T @ torch.linalg.solve(sigma, j))
        np.testing.assert_allclose(row, np.sort(1.0 / mu.numpy())[::-1], rtol=1e-6)
    assert np.all(np.diff(got, axis=1) <= 0)  # descending


def test_counts_per_point_and_median() -> None:
    v = np.array([[2.0, 1.0, 1e-5], [2.0, 1e-5, 1e-5], [2.0, 1.0, 0.5]])
    found = jacobian_dimension(v, floor=1e-4, threshold=10.0)
    assert found.counts.tolist() == [2, 1, 3] and found.value == 2.0


@pytest.mark.slow
def test_a_trained_line_reads_one() -> None:
    spec = FitSpec(data=DataSpec("line", n=1000)).replace(train={"steps": 4000})
    trainer = Trainer(spec)
    trainer.run()
    result = trainer.result()
    assert result.jacobian_points == "train"  # the toy loader holds no rows out
    assert result.jacobian_dim == 1
