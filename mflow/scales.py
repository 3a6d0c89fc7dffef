r"""Dimension across scales: one readout from the spectra of fits at several data-noise floors.

A fit at data-noise floor ``sigma_x`` ends with a prior ``N(0, A A^T + sigma2 I)`` for its codes
``g(x) + eps``; each fit sees the data blurred by Gaussian noise of variance
``t = sigma2 + sigma_x**2`` (its *floor*, ``mflow.readout.noise_floor_variance``). The flow
preserves volume, so the prior's log-volume

    ``V(t) = sum_k log(lambda_k + sigma2) = log det(A A^T + sigma2 I)``

tracks twice the entropy of the blurred data (the fit makes its codes as Gaussian as it can,
and a Gaussian has the least log-determinant for a given entropy). Blurring a d-dimensional
manifold in ``R^D`` by noise of variance ``t`` (small against its curvature and extent) adds
``(D - d) / 2 * log t`` to that entropy: each of the ``D - d`` directions normal to it gains
the noise's width, the ``d`` along it keep the data's own. So across floors

    ``dV / dlog t = D - d``,

which is LIDL's insight (Tempczyk et al. 2022: the log-density of data blurred by noise of
scale ``delta`` falls as ``(d - D) log delta``) read off the flow's prior instead of its
density at each point. Eigenvalue by eigenvalue it is ID-NF's (Horvat and Pfister 2022): a
normal direction's variance follows the noise, ``lambda ~ t`` (log-log slope 1), a tangent one
stays at the data's, slope 0. The sum is used because a volume-preserving flow may trade
variance between directions from one floor to the next (squeeze the manifold's directions
while it widens the noise's), which moves single eigenvalues but not their product.

Two readouts come from it:

- ``scale_dimensions``: between each pair of neighbouring floors, ``d_j = D - dV / dlog t``,
  the finite difference, at the scale ``r_j`` (the geometric mean of the two floors' noise
  std ``sqrt(t)``): the dimension as a function of scale, with no model.
- ``scale_readout``: one dimension for all floors at once, from the least-squares fit of

      ``V(t) = C + m log(s**2 + t)``

  over the floors (a grid over ``s``; ``C`` and ``m``, clipped to ``[0, D]``, in closed form).
  Data of dimension ``d`` with isotropic noise of std ``s`` of their own give
  ``V = C + (D - d) log(s**2 + t)`` exactly in this picture: below the scale ``s`` every
  direction holds the data's noise and the log-volume does not move (``D`` dimensions), above
  it the ``D - d`` normal directions follow the floor (``d`` dimensions); ``s`` is where the
  slope is half way, ID-NF's onset of the sigmoid ``t / (s**2 + t)``. The readout is
  ``dimension = round(D - m)``, ``noise_scale = s`` (``None`` unless the finest pair of
  floors reads more than ``tolerance`` above the dimension: no noise is seen within the
  floors probed, and the fitted ``s`` is then only a bound), and the range of floors where
  it holds: the longest run of neighbouring floor pairs whose ``d_j`` is within
  ``tolerance`` (default 1) of ``dimension`` (ties: the coarser run).

The readings below the finest floor a fit resolves also see what training left undone: an
unused direction the flow has not yet flattened keeps variance above the floor, which the
log-volume counts as a dimension at that scale, as it counts real noise.

Pure NumPy; the survey pipeline groups fits by floor and calls these
(``pipelines.analysis.scales``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MIN_FLOORS",
    "ScaleReadout",
    "log_volume",
    "scale_dimensions",
    "scale_readout",
]

MIN_FLOORS = 3  # floors a readout needs: the model has three parameters (C, m, s)
_GRID = 400  # points of the grid over s (log-spaced)
_GRID_SPAN = 10.0  # the grid over s runs from the finest floor's std / this to the coarsest's


def log_volume(eigenvalues: Sequence[float], sigma2: float) -> float:
    """``sum_k log(lambda_k + sigma2)``: the log-determinant of the prior ``A A^T + sigma2 I``.

    Example:
        >>> round(log_volume([1.0, 1e-4], 0.0), 3)
        -9.21
    """
    values = np.asarray(eigenvalues, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError("log_volume: eigenvalues must be a non-empty 1-D list of finite numbers")
    if not sigma2 >= 0:
        raise ValueError(f"log_volume: sigma2 must be >= 0, got {sigma2}")
    total = np.clip(values, 0.0, None) + sigma2
    if np.any(total <= 0):
        raise ValueError("log_volume: an eigenvalue is 0 and sigma2 is 0: the volume is 0")
    return float(np.sum(np.log(total)))


def _checked(floors: Sequence[float], volumes: Sequence[float], sigma2: float | Sequence[float]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Floors (noise std), their variances ``t`` and the log-volumes, sorted by floor."""
    sx = np.asarray(floors, dtype=np.float64)
    v = np.asarray(volumes, dtype=np.float64)
    if sx.ndim != 1 or sx.shape != v.shape:
        raise ValueError(f"scales: floors and volumes must be 1-D of one length, got "
                         f"{sx.shape} and {v.shape}")
    if not (np.all(np.isfinite(sx)) and np.all(sx > 0)):
        raise ValueError("scales: floors must be finite noise stds > 0")
    if not np.all(np.isfinite(v)):
        raise ValueError("scales: log-volumes must be finite")
    s2 = np.broadcast_to(np.asarray(sigma2, dtype=np.float64), sx.shape)
    if not (np.all(np.isfinite(s2)) and np.all(s2 >= 0)):
        raise ValueError("scales: sigma2 must be finite and >= 0")
    order = np.argsort(sx, kind="stable")
    sx, v, t = sx[order], v[order], (s2 + sx**2)[order]
    if np.any(np.diff(sx) <= 0):
        raise ValueError("scales: two fits at the same floor; give one log-volume per floor "
                         "(the median over seeds)")
    return sx, t, v


def scale_dimensions(
    floors: Sequence[float], volumes: Sequence[float], ambient_dim: int,
    sigma2: float | Sequence[float] = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The dimension between each pair of neighbouring floors: ``(r, d)`` with ``r_j`` the
    geometric mean of the two floors and ``d_j = D - dV / dlog t``, floors ascending.

    Args:
        floors: each fit's data-noise floor ``sigma_x`` (any order, distinct).
        volumes: the log-volume ``V`` at each floor (``log_volume``).
        ambient_dim: ``D``, the number of eigenvalues.
        sigma2: the spread variance (one, or one per floor): ``t = sigma2 + sigma_x**2``.

    Example:
        >>> sx = np.array([0.01, 0.03, 0.1])
        >>> r, d = scale_dimensions(sx, 5.0 + 8 * np.log(sx**2), 10)  # 8 normal directions
        >>> np.round(d, 6).tolist(), np.round(r, 4).tolist()
        ([2.0, 2.0], [0.0173, 0.0548])
    """
    sx, t, v = _checked(floors, volumes, sigma2)
    slopes = np.diff(v) / np.diff(np.log(t))
    return np.sqrt(sx[:-1] * sx[1:]), ambient_dim - slopes


@dataclass(frozen=True)
class ScaleReadout:
    """One dimension read from fits at several floors (see the module docstring)."""

    dimension: int  # round(D - m): the dimension the log-volume's slope gives
    dimension_raw: float  # D - m, unrounded
    noise_scale: float | None  # s: below it the data fill every direction; None: none seen
    low: float | None  # the finest floor (sigma_x) of the range where it holds
    high: float | None  # ... and of the coarsest; None: no pair of floors within tolerance
    scales: tuple[float, ...]  # r_j per pair of neighbouring floors, ascending (scale_dimensions)
    dimensions: tuple[float, ...]  # d_j per pair
    residual: float  # rms of the model fit, in nats of log-volume


def _fit(log_t: np.ndarray, v: np.ndarray, ambient_dim: int, s2: float
         ) -> tuple[float, float, float]:
    """``(sse, c, m)`` of ``v = c + m log(s2 + t)``, ``m`` clipped to ``[0, D]``."""
    u = np.log(s2 + np.exp(log_t))
    spread = u - u.mean()
    denom = float(spread @ spread)
    m = float(spread @ (v - v.mean())) / denom if denom > 0 else 0.0
    m = min(max(m, 0.0), float(ambient_dim))
    c = float(np.mean(v - m * u))
    residual = v - c - m * u
    return float(residual @ residual), c, m


def _holds(d: np.ndarray, dimension: int, tolerance: float,
           sx: np.ndarray) -> tuple[float | None, float | None]:
    """The finest and coarsest floor std of the longest run of floor pairs within
    ``tolerance`` of ``dimension`` (ties: the coarser run)."""
    best, start, runs = None, None, []
    for j, ok in enumerate(np.abs(d - dimension) <= tolerance):
        if ok and start is None:
            start = j
        if not ok and start is not None:
            runs.append((start, j - 1))
            start = None
    if start is not None:
        runs.append((start, len(d) - 1))
    for run in runs:  # later (coarser) runs win ties
        if best is None or run[1] - run[0] >= best[1] - best[0]:
            best = run
    if best is None:
        return None, None
    return float(sx[best[0]]), float(sx[best[1] + 1])


def scale_readout(
    floors: Sequence[float],
    volumes: Sequence[float],
    ambient_dim: int,
    sigma2: float | Sequence[float] = 0.0,
    tolerance: float = 1.0,
) -> ScaleReadout:
    """Read one dimension from the log-volumes of fits at ``MIN_FLOORS`` or more floors.

    Args:
        floors: each fit's data-noise floor ``sigma_x`` (any order, distinct).
        volumes: the log-volume at each floor (``log_volume``; the median over seeds).
        ambient_dim: ``D``, the number of eigenvalues of each spectrum.
        sigma2: the spread variance (one, or one per floor): ``t = sigma2 + sigma_x**2``.
        tolerance: how far a pair's ``d_j`` may be from the dimension within its range.

    Example: a 2-D manifold in ``R^10`` with noise of std 0.03, floors 0.001 to 0.3:

        >>> sx = np.array([0.001, 0.003, 0.01, 0.03, 0.1, 0.3])
        >>> out = scale_readout(sx, 1.0 + 8 * np.log(0.03**2 + sx**2), 10)
        >>> out.dimension, round(out.noise_scale, 3), out.high
        (2, 0.03, 0.3)
    """
    sx, t, v = _checked(floors, volumes, sigma2)
    if t.size < MIN_FLOORS:
        raise ValueError(f"scale_readout: needs fits at {MIN_FLOORS} or more floors, got "
                         f"{t.size}")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"scale_readout: tolerance must be >= 0, got {tolerance}")
    log_t = np.log(t)
    lo, hi = sx[0] / _GRID_SPAN, sx[-1]
    grid = np.concatenate([[0.0], np.geomspace(lo, hi, _GRID)])
    fits = [_fit(log_t, v, ambient_dim, s * s) for s in grid]
    best = int(np.argmin([f[0] for f in fits]))
    sse, _, m = fits[best]
    dimension = int(np.round(ambient_dim - m))
    r, d = scale_dimensions(sx, v, ambient_dim, sigma2=t - sx**2)
    low, high = _holds(d, dimension, tolerance, sx)
    # A noise scale only where the finest floors see more dimensions than the readout: else
    # the data show none within the floors probed (and the fitted s is only a bound).
    seen = best > 0 and d[0] > dimension + tolerance
    noise = float(grid[best]) if seen else None
    return ScaleReadout(
        dimension=dimension, dimension_raw=float(ambient_dim - m), noise_scale=noise,
        low=low, high=high, scales=tuple(float(x) for x in r),
        dimensions=tuple(float(x) for x in d), residual=float(np.sqrt(sse / t.size)),
    )
