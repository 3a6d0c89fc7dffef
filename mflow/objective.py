r"""The spread KL objective (Zhang et al., "Spread flows for manifold modelling").

For data ``x``, flow ``g`` and prior ``q = N(0, A A^T)``, both sides are spread by the same
Gaussian noise ``eps ~ N(0, sigma2 I)`` in latent space, which makes the KL between the
(degenerate) data and model distributions finite. Up to a constant, the loss per batch is

.. math::
    L = -\frac{1}{B}\sum_i \Big[\log N(g(x_i) + \epsilon_i;\ 0,\ A A^T + \sigma^2 I)
        + \log|\det J_g(x_i)|\Big] + w \cdot \widehat{(-H)},

with a fresh ``eps`` drawn at every call (the stated objective; the authors' code uses a
constant shift instead). The log-det term is zero for a volume-preserving flow. The optional
``\widehat{(-H)}`` is the batch Gaussian-mixture estimate of the negative entropy of
``g(x) + eps`` (the paper's Appendix B.4), weighted by ``w`` (0 = off, the default).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["negentropy_estimate", "spread_kl_loss", "spread_noise"]


def spread_noise(
    shape: tuple[int, ...], like: Tensor, sigma2: float, generator: torch.Generator | None = None
) -> Tensor:
    """``eps ~ N(0, sigma2 I)`` of ``shape``, on the device and of the dtype of ``like``."""
    noise = torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
    return math.sqrt(sigma2) * noise


def negentropy_estimate(z_spread: Tensor, z: Tensor, sigma2: float) -> Tensor:
    r"""``mean_i log( 1/B sum_j N(z_spread_i; z_j, sigma2 I) )``, an estimate of ``-H``.

    Example:
        >>> z = torch.zeros(4, 2)
        >>> round(negentropy_estimate(z, z, 1.0).item(), 4)  # log N(0; 0, I) in 2-D
        -1.8379
    """
    batch, dim = z.shape
    sq = torch.cdist(z_spread, z).pow(2)
    log_kernel = -0.5 * sq / sigma2 - 0.5 * dim * math.log(2 * math.pi * sigma2)
    return (torch.logsumexp(log_kernel, dim=1) - math.log(batch)).mean()


def spread_kl_loss(
    flow: Callable[[Tensor], tuple[Tensor, Tensor]],
    prior,
    x: Tensor,
    eps: Tensor,
    entropy_weight: float = 0.0,
    with_codes: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The scalar loss above for one batch ``x`` and its spread noise ``eps``.

    ``flow(x) -> (z, logdet)``; ``prior`` has ``log_prob`` and ``sigma2``; ``eps`` has the
    shape of ``z`` (draw it with ``spread_noise``). Taking the noise as an argument keeps
    this function free of random state, so it can be vectorised over packed fits.
    ``with_codes=True`` returns ``(loss, z)``, the codes detached (for the closed-form prior).
    """
    z, logdet = flow(x)
    z_spread = z + eps
    loss = -(prior.log_prob(z_spread) + logdet).mean()
    if entropy_weight:
        loss = loss + entropy_weight * negentropy_estimate(z_spread, z, prior.sigma2)
    return (loss, z.detach()) if with_codes else loss
