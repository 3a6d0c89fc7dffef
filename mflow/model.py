"""The model: a flow ``g`` and a latent prior, with the uses the paper makes of them."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mflow.config import ModelSpec, PriorSpec
from mflow.flow import Flow, build_flow
from mflow.objective import spread_kl_loss, spread_noise
from mflow.prior import ManifoldPrior, StandardPrior

__all__ = ["PRIORS", "ManifoldFlow", "build_prior"]

#: The priors by ``PriorSpec.kind``.
PRIORS = {"manifold": ManifoldPrior, "standard": StandardPrior}


def build_prior(spec: PriorSpec, dim: int) -> ManifoldPrior | StandardPrior:
    """The prior named by ``spec.kind``: ``manifold`` or ``standard``."""
    if spec.kind not in PRIORS:
        raise ValueError(f"PriorSpec: unknown kind {spec.kind!r}; known: {sorted(PRIORS)}")
    return PRIORS[spec.kind](dim, spec.sigma2)


class ManifoldFlow(nn.Module):
    """``x -> z = g(x)`` with prior ``N(0, A A^T)`` (or ``N(0, I)`` for the baseline).

    Example:
        >>> model = ManifoldFlow.build(ModelSpec(couplings=2), PriorSpec(), (2,))
        >>> model.sample(3).shape, model.project(torch.randn(5, 2), 1).shape
        (torch.Size([3, 2]), torch.Size([5, 1]))
    """

    def __init__(
        self, flow: Flow, prior: ManifoldPrior | StandardPrior, offset: Tensor
    ) -> None:
        super().__init__()
        self.flow = flow
        self.prior = prior
        # The prior is zero-mean; data are centred by this fixed offset (sample-shaped, set
        # from the data before training, see ``Trainer``): a translation preserves volume.
        self.register_buffer("offset", offset)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``z = g(x - offset)`` and ``log|det J|``."""
        return self.flow(x - self.offset)

    def decode(self, z: Tensor) -> Tensor:
        """``x = g^{-1}(z) + offset``."""
        return self.flow.inverse(z) + self.offset

    @classmethod
    def build(
        cls, model: ModelSpec, prior: PriorSpec, shape: tuple[int, ...], seed: int = 0
    ) -> ManifoldFlow:
        """Flow for samples of ``shape`` and the prior over its flattened output."""
        dim = 1
        for size in shape:
            dim *= size
        flow = build_flow(model, tuple(shape), seed)
        return cls(flow, build_prior(prior, dim), torch.zeros(tuple(shape)))

    def forward(
        self, x: Tensor, eps: Tensor, entropy_weight: float = 0.0, with_codes: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """The spread KL loss of batch ``x`` with spread noise ``eps`` (see ``mflow.objective``),
        and with ``with_codes`` the batch's codes ``g(x)`` (flattened, detached).

        Deterministic given its inputs, so ``torch.func`` can vectorise it over packed fits.
        """
        return spread_kl_loss(self.encode, self.prior, x, eps, entropy_weight, with_codes)

    def loss(
        self, x: Tensor, generator: torch.Generator | None = None, entropy_weight: float = 0.0
    ) -> Tensor:
        """The spread KL loss of batch ``x``, drawing fresh spread noise from ``generator``."""
        eps = spread_noise((x.shape[0], self.prior.dim), x, self.prior.sigma2, generator)
        return self(x, eps, entropy_weight)

    def spectrum(self) -> Tensor:
        """Eigenvalues of the prior covariance ``A A^T``, descending."""
        return self.prior.spectrum()

    def project(self, x: Tensor, k: int) -> Tensor:
        """The ``k``-dimensional representation ``g(x) E_k`` (top-``k`` eigenvectors)."""
        z, _ = self.encode(x)
        return z @ self.prior.eigenvectors(k).to(z.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``g^{-1}(z)``, ``z ~`` the prior (``N(0, A A^T)``: points on the learned manifold)."""
        return self.decode(self.prior.sample(n, generator))
