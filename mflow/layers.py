"""Invertible layers: affine couplings, permutations, squeeze and flatten.

Every layer maps ``x -> (y, log|det dy/dx|)`` in ``forward`` and ``y -> x`` in ``inverse``.
The log-determinant has one entry per sample. Forward and inverse are exact: a layer's
``inverse(forward(x)[0])`` returns ``x`` up to floating-point rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AffineCoupling",
    "Flatten",
    "InvertibleLayer",
    "Permutation",
    "Squeeze",
    "soft_clamp",
]


def soft_clamp(s: Tensor, clamp: float) -> Tensor:
    """Smoothly bound ``s`` to ``(-clamp, clamp)``: ``clamp * (2/pi) * atan(s / clamp)``.

    Near zero this is the identity, so small log-scales are untouched; large ones saturate,
    which keeps ``exp(s)`` from overflowing early in training (as in GIN and FrEIA).
    """
    return clamp * (2.0 / math.pi) * torch.atan(s / clamp)


class InvertibleLayer(nn.Module):
    """Base class. Contract: ``forward(x) -> (y, logdet)``, ``inverse(y) -> x``.

    ``logdet`` has shape ``(batch,)``; the log-dets of forward and inverse sum to zero.
    """

    #: True when the layer's Jacobian determinant is exactly one for every input.
    volume_preserving: bool = True

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _zero_logdet(x: Tensor) -> Tensor:
    return x.new_zeros(x.shape[0])


class AffineCoupling(InvertibleLayer):
    r"""Affine coupling on a split along dimension 1 (features, or channels of an image).

    With ``x = (x_a, x_b)`` and ``(\tilde s, t) = c(x_a)`` from the conditioner ``c``:

    .. math::
        s = \mathrm{clamp}(\tilde s), \qquad y_a = x_a, \qquad y_b = x_b \odot e^{s} + t.

    Volume-preserving (incompressible, GIN-style; Sorrenson et al. 2020): ``s`` is made
    zero-mean over the non-batch entries of each sample, so ``log|det J| = sum(s) = 0`` and
    the layer returns an exact zero. Otherwise (RealNVP) the log-det ``sum(s)`` is returned.

    Args:
        conditioner: maps ``x_a`` (``split`` entries along dim 1) to ``2 * (size - split)``
            entries along dim 1: log-scale first, shift second.
        split: how many entries along dim 1 pass through unchanged.
        volume_preserving: GIN (True) or RealNVP (False).
        clamp: bound of the soft-clamped log-scale.

    Example:
        >>> from mflow.conditioners import mlp_conditioner
        >>> layer = AffineCoupling(mlp_conditioner(1, 2), split=1)
        >>> y, logdet = layer(torch.randn(5, 2))
        >>> bool((logdet == 0).all())
        True
    """

    def __init__(
        self,
        conditioner: nn.Module,
        split: int,
        volume_preserving: bool = True,
        clamp: float = 2.0,
    ) -> None:
        super().__init__()
        if clamp <= 0:
            raise ValueError(f"AffineCoupling: clamp must be > 0, got {clamp}")
        self.conditioner = conditioner
        self.split = split
        self.volume_preserving = volume_preserving
        self.clamp = clamp

    def _scale_shift(self, x_a: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self.conditioner(x_a).chunk(2, dim=1)
        s = soft_clamp(s, self.clamp)
        if self.volume_preserving:
            dims = tuple(range(1, s.dim()))
            s = s - s.mean(dim=dims, keepdim=True)
        return s, t

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        s, t = self._scale_shift(x_a)
        y = torch.cat([x_a, x_b * torch.exp(s) + t], dim=1)
        if self.volume_preserving:
            return y, _zero_logdet(x)
        return y, s.flatten(1).sum(dim=1)

    def inverse(self, y: Tensor) -> Tensor:
        y_a, y_b = y[:, : self.split], y[:, self.split :]
        s, t = self._scale_shift(y_a)
        return torch.cat([y_a, (y_b - t) * torch.exp(-s)], dim=1)


class Permutation(InvertibleLayer):
    """A fixed permutation of dimension 1 (features or channels). Log-det 0.

    Example:
        >>> p = Permutation(torch.tensor([1, 0]))
        >>> p(torch.tensor([[1.0, 2.0]]))[0]
        tensor([[2., 1.]])
    """

    def __init__(self, perm: Tensor) -> None:
        super().__init__()
        perm = torch.as_tensor(perm, dtype=torch.long)
        if not torch.equal(perm.sort().values, torch.arange(len(perm))):
            raise ValueError(f"Permutation: not a permutation of 0..{len(perm) - 1}: {perm}")
        self.register_buffer("perm", perm)
        self.register_buffer("inv", torch.argsort(perm))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, self.perm], _zero_logdet(x)

    def inverse(self, y: Tensor) -> Tensor:
        return y[:, self.inv]


class Squeeze(InvertibleLayer):
    """Checkerboard squeeze ``(C, H, W) -> (4C, H/2, W/2)``: each 2x2 patch becomes 4 channels.

    Example:
        >>> Squeeze()(torch.zeros(3, 1, 28, 28))[0].shape
        torch.Size([3, 4, 14, 14])
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(f"Squeeze: height and width must be even, got {tuple(x.shape[-2:])}")
        return F.pixel_unshuffle(x, 2), _zero_logdet(x)

    def inverse(self, y: Tensor) -> Tensor:
        return F.pixel_shuffle(y, 2)


class Flatten(InvertibleLayer):
    """``(C, H, W) <-> (C*H*W,)``. Log-det 0.

    Example:
        >>> Flatten((4, 7, 7))(torch.zeros(2, 4, 7, 7))[0].shape
        torch.Size([2, 196])
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.flatten(1), _zero_logdet(x)

    def inverse(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], *self.shape)
