r"""Dimension readout: from the descending spectrum of ``A A^T`` to an integer dimension.

Each rule is a small pure function ``rule(eigenvalues, floor, **params) -> int`` over a
descending spectrum, where ``floor`` is the noise variance the fit ends at: the spread noise
``sigma2`` plus the square of the data-noise floor ``sigma_x`` (``noise_floor_variance``).
``RULES`` names the rules; ``estimate_dimension`` dispatches by name and raises on an unknown one.
``readout_floor(spec)`` and ``readout_cut(spec)`` are a fit's floor and threshold cut (the one
place they are computed, for training, settling and analysis alike); ``SpectrumReadout`` holds
a rule with its floor and parameters and reads spectra with it.

Default: ``threshold`` with factor 20, i.e. count the eigenvalues above ``20 * floor``.
Why: along a direction the data do not use, the latents ``g(x)`` of a volume-preserving flow
vary only by the data noise (the flow cannot squeeze it away without stretching the manifold),
so the prior's eigenvalue there settles near ``sigma_x**2``, about the floor, while a used
direction keeps an eigenvalue of the order of the data's variance along the manifold (0.1 to
10 for standardised data). A factor of 20 puts the cut about a third of the way up that range
on a log scale: unused directions that the flow has not fully straightened (seen at 2-5 times
the floor) stay below it, and it does not depend on the data's scale the way a ratio to the
top eigenvalue does or need the clean gap that smoothly decaying spectra lack. ``gap`` (the
largest drop in ``log(lambda + floor)``, with the floor appended) is there for spectra whose
used eigenvalues themselves sit near the floor.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mflow.config import FitSpec

__all__ = [
    "RULES",
    "DimensionReadout",
    "SpectrumReading",
    "SpectrumReadout",
    "estimate_dimension",
    "gap_rule",
    "log_gap_at",
    "noise_floor_variance",
    "readout_cut",
    "readout_floor",
    "threshold_rule",
]


def noise_floor_variance(sigma2: float, noise_floor: float) -> float:
    """The variance a fit's unused directions settle at: ``sigma2 + noise_floor**2``.

    Example:
        >>> noise_floor_variance(1e-4, 0.01)
        0.0002
    """
    return sigma2 + noise_floor**2


def readout_floor(spec: FitSpec) -> float:
    """The floor the readout of the fit of ``spec`` reads against: ``noise_floor_variance``
    of its spread noise ``prior.sigma2`` and its data-noise floor ``train.noise_floor``.

    Example:
        >>> from mflow.config import FitSpec
        >>> readout_floor(FitSpec().replace(prior={"sigma2": 1e-4}, train={"noise_floor": 0.01}))
        0.0002
    """
    return noise_floor_variance(spec.prior.sigma2, spec.train.noise_floor)


def readout_cut(spec: FitSpec) -> float:
    """The threshold readout's cut ``readout.threshold * readout_floor(spec)``: eigenvalues
    above it count as used (``mflow.settle`` judges a fit against it, whatever its rule).

    Example:
        >>> from mflow.config import FitSpec
        >>> round(readout_cut(FitSpec()), 6)
        0.00202
    """
    return spec.readout.threshold * readout_floor(spec)


def _check(eigenvalues: Sequence[float], floor: float) -> np.ndarray:
    values = np.asarray(eigenvalues, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"readout: eigenvalues must be a non-empty 1-D list, got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("readout: eigenvalues contain NaN or inf")
    if np.any(np.diff(values) > 1e-12 * max(1.0, values.max())):
        raise ValueError("readout: eigenvalues must be in descending order")
    if not floor > 0:
        raise ValueError(f"readout: floor must be > 0, got {floor}")
    return np.clip(values, 0.0, None)


def threshold_rule(eigenvalues: Sequence[float], floor: float, threshold: float = 20.0) -> int:
    """The number of eigenvalues above ``threshold * floor``.

    Example:
        >>> threshold_rule([2.0, 0.5, 1e-6], floor=1e-4)
        2
    """
    if not threshold > 0:
        raise ValueError(f"threshold_rule: threshold must be > 0, got {threshold}")
    return int(np.sum(_check(eigenvalues, floor) > threshold * floor))


def gap_rule(eigenvalues: Sequence[float], floor: float) -> int:
    """The position of the largest drop in ``log(lambda_i + floor)``, ``floor`` appended.

    Appending the floor lets a full-rank spectrum read as full rank (its largest drop is
    the last one, down to the floor).

    Example:
        >>> gap_rule([1.0, 0.8, 1e-7, 1e-8], floor=1e-4)
        2
        >>> gap_rule([1.0, 0.9], floor=1e-4)
        2
    """
    values = _check(eigenvalues, floor)
    logs = np.log(np.append(values, 0.0) + floor)
    return int(np.argmax(logs[:-1] - logs[1:]) + 1)


def log_gap_at(eigenvalues: Sequence[float], floor: float, k: int) -> float:
    """The drop ``log(lambda_k + floor) - log(lambda_{k+1} + floor)`` at a cut after ``k``.

    ``k = D`` measures the drop to the floor; ``k = 0`` has no drop (0.0).

    Example:
        >>> round(log_gap_at([1.0, 1e-8], 1e-4, 1), 2)
        9.21
    """
    values = _check(eigenvalues, floor)
    if not 0 <= k <= values.size:
        raise ValueError(f"log_gap_at: k must be in [0, {values.size}], got {k}")
    if k == 0:
        return 0.0
    logs = np.log(np.append(values, 0.0) + floor)
    return float(logs[k - 1] - logs[k])


RULES: dict[str, Callable[..., int]] = {"gap": gap_rule, "threshold": threshold_rule}


def estimate_dimension(
    eigenvalues: Sequence[float], floor: float, rule: str = "threshold", **params: float
) -> int:
    """Apply the readout rule named ``rule``; an unknown name raises ``ValueError``.

    Example:
        >>> estimate_dimension([3.0, 1e-7], 1e-4, rule="gap")
        1
    """
    try:
        fn = RULES[rule]
    except KeyError:
        raise ValueError(f"unknown readout rule {rule!r}; known: {sorted(RULES)}") from None
    return fn(eigenvalues, floor, **params)


@dataclass(frozen=True)
class SpectrumReading:
    """What ``SpectrumReadout.read`` reads from one spectrum."""

    dimension: int  # the rule's dimension
    gap: float  # log_gap_at the cut after it: how clearly the spectrum drops there


@dataclass(frozen=True)
class SpectrumReadout:
    """A readout rule with its floor and parameters, applied to spectra: it fits nothing (the
    flow is fitted by ``mflow.fit``), it reads the spectrum of ``A A^T`` a fit ended with.

    Args:
        rule: a name in ``RULES``; an unknown name raises ``ValueError``.
        floor: the noise variance unused directions settle at (``noise_floor_variance``).
        params: the rule's parameters (``threshold`` for the threshold rule).

    Example:
        >>> SpectrumReadout("threshold", floor=1e-4).read([1.0, 0.1, 1e-9]).dimension
        2
    """

    rule: str = "threshold"
    floor: float = 1e-4
    params: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown readout rule {self.rule!r}; known: {sorted(RULES)}")

    def read(self, eigenvalues: Sequence[float]) -> SpectrumReading:
        """The dimension of a descending spectrum and the log-gap at the cut after it."""
        dimension = estimate_dimension(eigenvalues, self.floor, self.rule, **self.params)
        return SpectrumReading(dimension, log_gap_at(eigenvalues, self.floor, dimension))


class DimensionReadout:
    """Deprecated: use ``SpectrumReadout(rule, floor, params).read(spectrum)``. Kept for code
    written against its sklearn-shaped name: ``fit`` takes a spectrum, not data, and sets
    ``dimension_`` and ``gap_``."""

    def __init__(self, rule: str = "threshold", floor: float = 1e-4, **params: float) -> None:
        warnings.warn("DimensionReadout is deprecated: use SpectrumReadout(rule, floor, "
                      "params).read(spectrum)", DeprecationWarning, stacklevel=2)
        self._readout = SpectrumReadout(rule, floor, params)
        self.rule, self.floor, self.params = rule, floor, params

    def fit(self, eigenvalues: Sequence[float]) -> DimensionReadout:
        """Read the dimension of a descending spectrum; sets ``dimension_`` and ``gap_``."""
        reading = self._readout.read(eigenvalues)
        self.dimension_, self.gap_ = reading.dimension, reading.gap
        return self
