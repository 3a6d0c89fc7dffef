"""The priors: densities against torch's MultivariateNormal, samples, spectrum."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import MultivariateNormal

from mflow.prior import ManifoldPrior, StandardPrior


def _prior_with_random_a(dim: int, sigma2: float = 1e-4) -> ManifoldPrior:
    prior = ManifoldPrior(dim, sigma2).double()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        prior.weight.copy_(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
        prior.weight.diagonal().abs_().add_(0.5)
    return prior


def test_log_prob_matches_multivariate_normal_for_full_rank_a():
    prior = _prior_with_random_a(4, sigma2=1e-3)
    cov = prior.covariance() + 1e-3 * torch.eye(4, dtype=torch.float64)
    z = torch.randn(50, 4, dtype=torch.float64)
    expected = MultivariateNormal(torch.zeros(4, dtype=torch.float64), cov).log_prob(z)
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-9)


def test_log_prob_finite_for_rank_deficient_a():
    prior = ManifoldPrior(3).double()
    with torch.no_grad():
        prior.weight.copy_(torch.diag(torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)))
    lp = prior.log_prob(torch.randn(10, 3, dtype=torch.float64))
    assert torch.isfinite(lp).all()


def test_sample_covariance_matches_a_a_t():
    prior = _prior_with_random_a(3)
    gen = torch.Generator().manual_seed(1)
    samples = prior.sample(200_000, gen)
    sample_cov = samples.T @ samples / samples.shape[0]
    target = prior.covariance().detach()
    assert torch.allclose(sample_cov, target, atol=0.03 * target.abs().max().item())


def test_samples_of_rank_one_prior_lie_on_a_line():
    prior = ManifoldPrior(2).double()
    with torch.no_grad():
        prior.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64))
    s = prior.sample(100)
    assert torch.allclose(s[:, 0], s[:, 1])


def test_spectrum_and_eigenvectors():
    prior = ManifoldPrior(3).double()
    with torch.no_grad():
        prior.weight.copy_(torch.diag(torch.tensor([0.1, 3.0, 1.0], dtype=torch.float64)))
    assert torch.allclose(prior.spectrum(), torch.tensor([9.0, 1.0, 0.01], dtype=torch.float64))
    top = prior.eigenvectors(1)[:, 0].abs()
    assert torch.allclose(top, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))


def test_fit_covariance_sets_a_a_t():
    prior = ManifoldPrior(2).double()
    cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    prior.fit_covariance(cov)
    assert torch.allclose(prior.covariance(), cov)
    assert torch.equal(prior.A, torch.tril(prior.A))


def test_a_starts_at_identity_and_gets_gradients():
    prior = ManifoldPrior(3)
    assert torch.equal(prior.A, torch.eye(3))
    prior.log_prob(torch.randn(5, 3)).sum().backward()
    assert prior.weight.grad is not None and prior.weight.grad.abs().sum() > 0


def test_standard_prior_matches_multivariate_normal():
    z = torch.randn(20, 3)
    expected = MultivariateNormal(torch.zeros(3), torch.eye(3)).log_prob(z)
    assert torch.allclose(StandardPrior(3).log_prob(z), expected, atol=1e-5)
    assert list(StandardPrior(3).parameters()) == []


@pytest.mark.parametrize("prior", [ManifoldPrior(3), StandardPrior(3)])
def test_bad_shapes_and_arguments_are_named(prior):
    with pytest.raises(ValueError, match=r"z must have shape \(N, 3\)"):
        prior.log_prob(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="n must be >= 0"):
        prior.sample(-1)


@pytest.mark.parametrize("sigma2", [0.0, -1e-4])
def test_sigma2_must_be_positive(sigma2):
    with pytest.raises(ValueError, match="sigma2 must be > 0"):
        ManifoldPrior(2, sigma2)
