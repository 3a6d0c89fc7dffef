r"""The dimension a trained flow reads at each point: the local variances of the model's density.

Near a point ``x`` the model's density is, to first order, Gaussian: ``g(x + v) = g(x) + J v``
with ``J = dg/dx`` and the codes distributed ``N(0, Sigma)``, ``Sigma = A A^T + sigma2 I``, so
the model's local precision in data space is ``J^T Sigma^{-1} J``. Its eigenvalues ``mu_i`` give
the model's *local variances* ``1 / mu_i`` along orthogonal data directions: a direction along the
manifold keeps a variance of the order of the data's spread along it, a direction off it the
variance of the data noise the fit ended at (``sigma_x^2``), as the flow must map noise along a
normal into a direction the prior has squeezed. The count of local variances above a cut is a
local dimension (the LIDL / FLIPD idea, Tempczyk et al. 2022, Kamkari et al. 2024, read from a
flow's Jacobian as in layer6ai-labs' dgm_geometry).

Unlike the rank of ``A A^T`` this count is a property of the model's density, not of how the
prior shares variance among directions: for any linear ``L`` of determinant one, the fit
``(L g, L Sigma L^T)`` has the same loss, and ``(L Sigma L^T)^{-1/2} L J`` has the same singular
values as ``Sigma^{-1/2} J``. The rank at a fixed cut moves with ``L``; this does not.

Read on held-out points (rows the fit did not train on), per point, then pooled by the median.
``local_variances`` computes the spectra; ``jacobian_dimension`` counts them against a cut in
units of the readout floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.func import jacrev, vmap

from mflow.model import ManifoldFlow

__all__ = ["JACOBIAN_THRESHOLD", "JacobianDimension", "jacobian_dimension", "local_variances"]

# The cut, in units of the readout floor (sigma2 + sigma_x^2): off-manifold directions sit at
# about 1, used ones at 10^2 and above (benchmarks/flow_readouts.py).
JACOBIAN_THRESHOLD = 8.0


@torch.no_grad()
def _prior_factor(model: ManifoldFlow, dtype: torch.dtype) -> Tensor:
    """The Cholesky factor of ``Sigma = A A^T + sigma2 I`` (identity plus ``sigma2`` for the
    fixed standard prior)."""
    dim = model.prior.dim
    weight = getattr(model.prior, "weight", None)
    eye = torch.eye(dim, dtype=torch.float64, device=model.offset.device)
    if weight is None:
        cov = eye
    else:
        a = torch.tril(weight.detach().double())
        cov = a @ a.T
    return torch.linalg.cholesky(cov + model.prior.sigma2 * eye).to(dtype)


def local_variances(model: ManifoldFlow, x: Tensor, width: int = 4096) -> np.ndarray:
    """Per point, the model's local variances ``1 / mu_i``, descending: ``(n, D)`` float64.

    ``mu_i`` are the eigenvalues of ``J^T Sigma^{-1} J`` at each row of ``x`` (the squared
    singular values of ``L^{-1} J``, ``Sigma = L L^T``), ``J`` the flow's Jacobian by autograd.
    ``width``: at most this many backward passes are batched at once (points x rows of ``J``),
    which bounds the memory an image flow's Jacobian takes.

    Example:
        >>> from mflow.config import ModelSpec, PriorSpec
        >>> m = ManifoldFlow.build(ModelSpec(couplings=2), PriorSpec(sigma2=1e-4), (3,))
        >>> local_variances(m, torch.randn(5, 3)).shape
        (5, 3)
    """
    was_training = model.training
    model.eval()
    dtype = x.dtype
    factor = _prior_factor(model, dtype)

    def code(point: Tensor) -> Tensor:
        z, _ = model.encode(point.unsqueeze(0))
        return z.reshape(-1)

    dim = factor.shape[0]
    chunk = max(1, width // dim)
    jac = vmap(jacrev(code, chunk_size=min(dim, width)))
    out = []
    for start in range(0, x.shape[0], chunk):
        rows = x[start : start + chunk]
        j = jac(rows).reshape(rows.shape[0], factor.shape[0], -1).detach()
        m = torch.linalg.solve_triangular(factor, j, upper=False)
        s = torch.linalg.svdvals(m.double())  # descending singular values
        # the smallest singular value gives the largest variance: reversed, descending
        out.append((1.0 / s.flip(-1).clamp_min(1e-30) ** 2).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out)


@dataclass(frozen=True)
class JacobianDimension:
    """What the Jacobian readout reads from a fit on some points."""

    value: float  # the median over points of the per-point count
    counts: np.ndarray  # per point: local variances above the cut
    spread: float  # interquartile range of the counts
    cut: float  # the cut, in data units squared


def jacobian_dimension(variances: np.ndarray, floor: float, threshold: float) -> JacobianDimension:
    """Count, per point, the local variances above ``threshold * floor``; pool by the median.

    Example:
        >>> v = np.array([[1.0, 0.5, 1e-4], [1.0, 1e-2, 1e-4]])
        >>> jacobian_dimension(v, floor=1e-4, threshold=20.0).counts.tolist()
        [2, 2]
    """
    cut = threshold * floor
    counts = (np.asarray(variances) > cut).sum(axis=1)
    q1, q3 = np.percentile(counts, [25, 75])
    return JacobianDimension(float(np.median(counts)), counts, float(q3 - q1), cut)
