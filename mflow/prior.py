"""Latent priors: the learnable degenerate Gaussian ``N(0, A A^T)`` and the fixed ``N(0, I)``."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ManifoldPrior", "StandardPrior"]

_LOG_2PI = math.log(2 * math.pi)


class _Prior(nn.Module):
    """Shared validation: public methods check shapes, private ones do the maths."""

    def __init__(self, dim: int, sigma2: float) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"prior: dim must be >= 1, got {dim}")
        if not sigma2 > 0:
            raise ValueError(f"prior: sigma2 must be > 0, got {sigma2}")
        self.dim = dim
        self.sigma2 = float(sigma2)

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of ``z`` of shape ``(N, dim)``; returns shape ``(N,)``."""
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"log_prob: z must have shape (N, {self.dim}), got {tuple(z.shape)}")
        return self._log_prob(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws of shape ``(n, dim)``."""
        if n < 0:
            raise ValueError(f"sample: n must be >= 0, got {n}")
        return self._sample(n, generator)

    def _reference(self) -> Tensor:
        """A tensor whose device and dtype new tensors take."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _noise(self, n: int, generator: torch.Generator | None) -> Tensor:
        ref = self._reference()
        return torch.randn(n, self.dim, generator=generator, device=ref.device, dtype=ref.dtype)


class ManifoldPrior(_Prior):
    r"""Degenerate Gaussian ``N(0, A A^T)`` with learnable lower-triangular ``A`` (init ``I``).

    ``log_prob`` evaluates the spread density ``N(z; 0, A A^T + \sigma^2 I)`` through the
    Cholesky factor ``L`` of ``\Sigma = A A^T + \sigma^2 I``:
    ``log p = -1/2 |L^{-1} z|^2 - sum(log diag L) - D/2 log 2 pi``, never forming ``\Sigma^{-1}``.
    ``sample`` draws from ``N(0, A A^T)`` itself, i.e. on the learned manifold.
    The intrinsic dimension is the rank of ``A A^T``: see ``spectrum``.

    Example:
        >>> prior = ManifoldPrior(3, sigma2=1e-4)
        >>> prior.log_prob(torch.zeros(2, 3)).shape
        torch.Size([2])
    """

    def __init__(self, dim: int, sigma2: float = 1e-4) -> None:
        super().__init__(dim, sigma2)
        self.weight = nn.Parameter(torch.eye(dim))

    def _reference(self) -> Tensor:
        return self.weight

    @torch.no_grad()
    def fit_covariance(self, covariance: Tensor) -> None:
        """Set ``A`` to the Cholesky factor of ``covariance``, so that ``A A^T`` equals it.

        This is the prior's maximum-likelihood value for latents of that second moment.
        """
        self.weight.copy_(torch.linalg.cholesky(covariance.to(self.weight)))

    @property
    def A(self) -> Tensor:
        """The lower-triangular factor (the upper triangle of ``weight`` is unused)."""
        return torch.tril(self.weight)

    def covariance(self) -> Tensor:
        """``A A^T``."""
        a = self.A
        return a @ a.T

    def _log_prob(self, z: Tensor) -> Tensor:
        # A A^T + sigma2 I is positive definite unless A holds NaN or inf; then the log-density
        # is NaN (which the fit reports as divergence) rather than an exception, and checking
        # ``info`` on the device needs no host synchronisation.
        spread = self.covariance()
        spread.diagonal().add_(self.sigma2)  # in place on a fresh product: one op, no eye
        chol, info = torch.linalg.cholesky_ex(spread)
        chol = torch.where(info > 0, torch.nan, chol)
        white = torch.linalg.solve_triangular(chol, z.T, upper=False)  # L^{-1} z^T, (D, N)
        half_logdet = torch.log(torch.diagonal(chol)).sum()
        return -0.5 * (white**2).sum(dim=0) - half_logdet - 0.5 * self.dim * _LOG_2PI

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        return self._noise(n, generator) @ self.A.T

    @torch.no_grad()
    def spectrum(self) -> Tensor:
        """Eigenvalues of ``A A^T``, descending (computed in float64, clipped at 0)."""
        values = torch.linalg.eigvalsh(self.covariance().double())
        return values.flip(0).clamp_min(0.0)

    @torch.no_grad()
    def eigenvectors(self, k: int) -> Tensor:
        """The top-``k`` eigenvectors of ``A A^T`` as columns ``(dim, k)``, by eigenvalue."""
        if not 0 <= k <= self.dim:
            raise ValueError(f"eigenvectors: k must be in [0, {self.dim}], got {k}")
        cov = self.covariance()
        _, vectors = torch.linalg.eigh(cov.double())
        return vectors.flip(1)[:, :k].to(cov.dtype)


class StandardPrior(_Prior):
    """Fixed ``N(0, I)``: the baseline's prior. It has no parameters and a flat spectrum.

    ``sigma2`` is kept for a uniform interface; the baseline's density is ``N(z; 0, I)``.

    Example:
        >>> StandardPrior(2).spectrum()
        tensor([1., 1.], dtype=torch.float64)
    """

    def __init__(self, dim: int, sigma2: float = 1e-4) -> None:
        super().__init__(dim, sigma2)
        # A buffer, so the prior knows its device and dtype and moves with .to().
        self.register_buffer("_anchor", torch.zeros(()))

    def _reference(self) -> Tensor:
        return self._anchor

    def _log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z**2).sum(dim=1) - 0.5 * self.dim * _LOG_2PI

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        return self._noise(n, generator)

    def spectrum(self) -> Tensor:
        return torch.ones(self.dim, dtype=torch.float64, device=self._anchor.device)

    def eigenvectors(self, k: int) -> Tensor:
        if not 0 <= k <= self.dim:
            raise ValueError(f"eigenvectors: k must be in [0, {self.dim}], got {k}")
        return torch.eye(self.dim, device=self._anchor.device, dtype=self._anchor.dtype)[:, :k]
