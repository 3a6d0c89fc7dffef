r"""Dimension readout: from the descending spectrum of ``A A^T`` to an integer dimension.

Each rule is a small pure function ``rule(eigenvalues, floor, **params) -> int`` over a
descending spectrum, where ``floor`` is the noise variance the fit ends at: the spread noise
``sigma2`` plus the square of the data-noise floor ``sigma_x`` (``noise_floor_variance``).
``RULES`` names the rules; ``estimate_dimension`` dispatches by name and raises on an unknown one.

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

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "RULES",
    "DimensionReadout",
    "estimate_dimension",
    "gap_rule",
    "log_gap_at",
    "noise_floor_variance",
    "threshold_rule",
]


def noise_floor_variance(sigma2: float, noise_floor: float) -> float:
    """The variance a fit's unused directions settle at: ``sigma2 + noise_floor**2``.

    Example:
        >>> noise_floor_variance(1e-4, 0.01)
        0.0002
    """
    return sigma2 + noise_floor**2


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


class DimensionReadout:
    """sklearn-shaped wrapper: ``DimensionReadout(rule).fit(spectrum).dimension_``.

    Example:
        >>> DimensionReadout("threshold", floor=1e-4).fit([1.0, 0.1, 1e-9]).dimension_
        2
    """

    def __init__(self, rule: str = "threshold", floor: float = 1e-4, **params: float) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown readout rule {rule!r}; known: {sorted(RULES)}")
        self.rule = rule
        self.floor = floor
        self.params = params

    def fit(self, eigenvalues: Sequence[float]) -> DimensionReadout:
        """Read the dimension of a descending spectrum; sets ``dimension_`` and ``gap_``."""
        self.dimension_ = estimate_dimension(eigenvalues, self.floor, self.rule, **self.params)
        self.gap_ = log_gap_at(eigenvalues, self.floor, self.dimension_)
        return self
