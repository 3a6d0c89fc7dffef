r"""Local intrinsic dimension of a point cloud: small pure NumPy estimators over neighbours.

The rank ``K`` of ``A A^T`` counts the *flat* dimensions a flow needs; a closed or strongly
curved d-manifold needs more than d of them (a sphere ``S^d`` needs ``d + 1``). Inside those
``K`` directions the codes ``g(x) E_K`` are still locally d-dimensional. These functions
measure that from the codes (or any points ``(n, D)``):

- ``mle``: Levina and Bickel (2004), "Maximum likelihood estimation of intrinsic dimension".
  With ``T_j(x)`` the distance from ``x`` to its j-th nearest neighbour, the per-point
  estimate is ``m(x) = [(1 / (k - 1)) sum_{j<k} log(T_k(x) / T_j(x))]^{-1}``; the points are
  pooled as MacKay and Ghahramani (2005) advise, by the inverse of the mean of the inverses.
- ``two_nn``: Facco et al. (2017), "Estimating the intrinsic dimension of datasets by a
  minimal neighborhood information": ``mu = T_2 / T_1`` is Pareto with exponent ``d``, so the
  maximum-likelihood estimate is ``n / sum log mu``; per point, ``1 / log mu``.
- ``local_pca_counts``: Fukunaga and Olsen (1971): per point, the number of eigenvalues of the
  covariance of its ``k`` nearest neighbours above ``cut`` times the largest.

Nearest-neighbour estimators read low when ``d`` is high for the number of points (at 1,000
points, a 20-cube reads about 14): ``calibrate`` maps an estimate to the dimension ``m`` at
which the same rule reads the same value on a uniform ``m``-cube of as many points (the idea
of DANCo's and MiND's calibration against simulated data, Ceruti et al. 2014).
``local_dimension`` combines the steps under a rule name (``LOCAL_RULES``).

A calibrated reading cannot tell a d-sphere in ``R^(d+1)`` from a ``(d+1)``-cube when ``d`` is
high for the number of points (both read ``d + 1`` at d = 10 from 1,000 points): against the
cube the sphere's missing edges look like one more dimension. What tells them apart is a
direction the points do not fill, the sphere's normal, which local PCA over wider patches
sees (``filled_directions``). So a reading that reaches the points' own dimension ``D`` is
held to the number of directions they fill.

A calibration against cubes also misreads a flow's codes where the flow has flattened the data.
The spread KL makes the codes in the ``K`` kept directions draws of the prior ``N(0, A A^T)``,
whose variances differ from direction to direction as freely as the loss allows; so stretched,
1,000 draws in 20 dimensions (variances 9, 4, 1, 0.25) read 15. Whitening them by the prior's
variances undoes the stretch but widens a curved set's thin directions too (a sphere's whitened
codes read ``d + 1``). ``code_dimension`` therefore asks first whether the whitened codes read
as the prior's own draws do (``fills_prior``): where they do, they fill all ``K`` directions;
where they read less, they lie on a curved set of lower dimension inside them, which the cube
calibration of the unwhitened codes reads.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LOCAL_NEIGHBOURS",
    "LOCAL_RULE",
    "LOCAL_RULES",
    "PCA_CUT",
    "LocalDimension",
    "PRIOR_MATCH",
    "calibrate",
    "code_dimension",
    "cube_reading",
    "filled_directions",
    "fills_prior",
    "gaussian_reading",
    "headline_dimension",
    "local_dimension",
    "local_pca_counts",
    "mle",
    "neighbour_distances",
    "patch_variances",
    "reference_cube",
    "two_nn",
]

LOCAL_NEIGHBOURS = 20  # k of the MLE and of local PCA
PCA_CUT = 0.05  # local PCA: eigenvalues above this fraction of the largest count (Fukunaga-Olsen)
CALIBRATION_SEED = 0  # the reference cubes' points
FILL_NEIGHBOURS = 50  # the fill test's neighbours (at k = 20 a sphere's normal does not show)
THIN_FACTOR = 0.5  # a direction is thin below this fraction of the reference cube's variance
# Whitened codes fill the prior's directions where their raw reading is at least this share of
# the prior's own draws' (chosen on scikit-dimension's manifolds, replicates 0 and 1: the flat
# sets read 0.99-1.07 of it, the sphere and the 10-D cubic in 11 directions 0.96-0.97)
PRIOR_MATCH = 0.98


def neighbour_distances(points: np.ndarray, k: int) -> np.ndarray:
    """Distances ``(n, k)`` from each point to its ``k`` nearest others, ascending.

    Brute force over the ``n x n`` Gram matrix (meant for ``n`` up to a few thousand).
    Coincident points are at distance 0; callers drop them (``_positive``).

    Example:
        >>> neighbour_distances(np.array([[0.0], [1.0], [3.0]]), 2)
        array([[1., 3.],
               [1., 2.],
               [2., 3.]])
    """
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2 or not 1 <= k < x.shape[0]:
        raise ValueError(f"neighbour_distances: need points (n, D) with n > k >= 1, got "
                         f"{x.shape} and k={k}")
    d2 = _squared_distances(x)
    np.fill_diagonal(d2, np.inf)
    near = np.partition(d2, k - 1, axis=1)[:, :k]
    return np.sqrt(np.sort(near, axis=1))


def _squared_distances(x: np.ndarray) -> np.ndarray:
    """The ``n x n`` squared Euclidean distances between the rows of ``x`` (float64), from
    the Gram matrix, clipped at 0 against rounding."""
    sq = np.einsum("ij,ij->i", x, x)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)


def _positive(distances: np.ndarray) -> np.ndarray:
    """The rows whose nearest distance is above zero (duplicates carry no scale)."""
    return distances[distances[:, 0] > 0]


def mle(distances: np.ndarray) -> tuple[float, np.ndarray]:
    """Levina-Bickel MLE from neighbour distances ``(n, k)``: the pooled estimate
    ``1 / mean(1 / m(x))`` and the per-point ``m(x)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> d, _ = mle(neighbour_distances(rng.uniform(size=(2000, 3)), 20))
        >>> 2.7 < d < 3.1
        True
    """
    t = _positive(distances)
    if not t.size:
        return math.nan, np.empty(0)
    inverse = np.log(t[:, -1:] / t[:, :-1]).mean(axis=1)  # 1 / m(x)
    inverse = np.maximum(inverse, 1e-12)
    return float(1.0 / inverse.mean()), 1.0 / inverse


def two_nn(distances: np.ndarray) -> tuple[float, np.ndarray]:
    """TwoNN from neighbour distances ``(n, >= 2)``: ``n / sum log(T_2 / T_1)`` and the
    per-point ``1 / log(T_2 / T_1)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> d, _ = two_nn(neighbour_distances(rng.uniform(size=(2000, 2)), 2))
        >>> 1.8 < d < 2.2
        True
    """
    t = _positive(distances)
    if not t.size:
        return math.nan, np.empty(0)
    log_mu = np.maximum(np.log(t[:, 1] / t[:, 0]), 1e-12)
    return float(1.0 / log_mu.mean()), 1.0 / log_mu


def patch_variances(points: np.ndarray, k: int) -> np.ndarray:
    """Per point, the eigenvalues (times ``k + 1``) of the covariance of the point and its
    ``k`` nearest neighbours: ``(n, min(k + 1, D))``, descending in each row."""
    x = np.asarray(points, dtype=np.float64)
    near = np.argpartition(_squared_distances(x), k, axis=1)[:, : k + 1]  # the point itself too
    patches = x[near] - x[near].mean(axis=1, keepdims=True)
    return np.linalg.svd(patches, compute_uv=False) ** 2


def local_pca_counts(points: np.ndarray, k: int, cut: float = PCA_CUT) -> np.ndarray:
    """Fukunaga-Olsen per point: how many eigenvalues of the covariance of the point and its
    ``k`` nearest neighbours exceed ``cut`` times the largest.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> plane = np.c_[rng.uniform(size=(500, 2)), np.zeros(500)]
        >>> set(local_pca_counts(plane, 12).tolist())
        {2}
    """
    values = patch_variances(points, k)
    return (values > cut * values[:, :1]).sum(axis=1)


def _patch_profile(points: np.ndarray, k: int) -> np.ndarray:
    """The median over points of each patch eigenvalue, in units of the patch's mean
    eigenvalue, ascending: ``(D,)`` (needs ``k + 1 > D``)."""
    values = patch_variances(points, k)
    values = values / np.maximum(values.mean(axis=1, keepdims=True), 1e-300)
    return np.median(values[:, ::-1], axis=0)


@functools.lru_cache(maxsize=64)
def _cube_profile(dim: int, n: int, k: int) -> np.ndarray:
    return _patch_profile(reference_cube(dim, n), k)


def filled_directions(points: np.ndarray, neighbours: int = FILL_NEIGHBOURS) -> int:
    """How many of their ``D`` directions the points ``(n, D)`` fill locally: ``D`` less the
    *thin* ones.

    Around each point take the covariance of it and its ``k = max(neighbours, 2 D)`` nearest
    others, in units of its mean eigenvalue, and the median over points of each eigenvalue,
    smallest first. The same profile of a uniform ``D``-cube of as many points is the
    reference: a full ``D``-dimensional cloud (edges, sampling and all) reads about the
    same, an edge-free one (a Gaussian) higher. The thin directions are the smallest
    eigenvalues below ``THIN_FACTOR`` times the reference's, counted up from the smallest
    until one is not. A sphere ``S^d`` in ``R^(d+1)`` has one (its normal: the cap's height
    varies as the square of its radius, the tangent spread as the radius), a d-torus in
    ``R^(2d)`` up to d; where the neighbourhoods are too wide for the curvature (a product of
    ten helices from 2,000 points) none shows, and ``D`` is returned, as it is when there are
    too few points to take ``2 D`` neighbours. Thin is measured against the patch's own
    spread, so a flat box with a side much shorter than the neighbourhoods counts that side
    as thin too (a 6-box with two sides 0.2 of the others fills 4): at that scale it is
    thinner. Whitening the points first would undo that, but on the codes of the development
    set (README "Results") it counted fewer cases right (12 of 17 against 15): a code cloud
    whose used direction is short, a sphere the flow half flattened, is then not thin.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> g = rng.standard_normal((1000, 4))
        >>> filled_directions(g / np.linalg.norm(g, axis=1, keepdims=True))  # S^3 in R^4
        3
        >>> filled_directions(rng.uniform(size=(1000, 4)))
        4
    """
    x = np.asarray(points, dtype=np.float64)
    n, dim = x.shape
    k = min(max(neighbours, 2 * dim), n - 1)
    if k <= dim:
        return dim
    full = _patch_profile(x, k) >= THIN_FACTOR * _cube_profile(dim, n, k)
    return dim - (int(np.argmax(full)) if full.any() else dim)  # less the thin ones below


def reference_cube(dim: int, n: int, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """``n`` points uniform in the unit ``dim``-cube: the calibration's reference."""
    return np.random.default_rng([seed, dim]).uniform(size=(n, dim))


def reference_gaussian(dim: int, n: int, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """``n`` standard Gaussian draws in ``dim`` dimensions: the prior test's reference."""
    return np.random.default_rng([seed, dim, 1]).standard_normal((n, dim))


Estimator = Callable[[np.ndarray], tuple[float, np.ndarray]]


def _estimators(k: int) -> dict[str, Estimator]:
    return {
        "mle": lambda x: mle(neighbour_distances(x, k)),
        "twonn": lambda x: two_nn(neighbour_distances(x, 2)),
        "lpca": lambda x: (float(np.mean(c := local_pca_counts(x, k))), c.astype(np.float64)),
    }


#: The rule names ``local_dimension`` takes: an estimator, optionally calibrated (``-cal``).
LOCAL_RULES = ("mle", "mle-cal", "twonn", "twonn-cal", "lpca")
#: The rule a fit's result uses (chosen on the development set, see the README's "Results").
LOCAL_RULE = "mle-cal"


@functools.lru_cache(maxsize=512)
def cube_reading(estimator: str, k: int, n: int, dim: int) -> float:
    """What ``estimator`` (``mle``, ``twonn`` or ``lpca``, with ``k`` neighbours) reads on
    ``reference_cube(dim, n)``. Cached: a fit reads its codes at every logged point, and
    the references stay the same."""
    return _estimators(k)[estimator](reference_cube(dim, n))[0]


@functools.lru_cache(maxsize=512)
def gaussian_reading(estimator: str, k: int, n: int, dim: int) -> float:
    """What ``estimator`` reads on ``reference_gaussian(dim, n)`` (cached as ``cube_reading``)."""
    return _estimators(k)[estimator](reference_gaussian(dim, n))[0]


def calibrate(value: float, reference: Callable[[int], float], upper: int) -> float:
    """The dimension ``m`` (interpolated linearly between integers, at most ``upper``) at which
    the reference reads ``value``; ``reference(m)``: the estimator's reading on an ``m``-cube
    (``cube_reading``).

    The reference's readings grow with ``m``; the search walks up from ``m = 1`` and stops at
    the first reading above ``value``, so it costs as many reference readings as the answer.
    Below the reading at ``m = 1`` it scales linearly from 0.

    Example:
        >>> value, _ = mle(neighbour_distances(reference_cube(4, 500, seed=1), 20))
        >>> round(calibrate(value, functools.partial(cube_reading, "mle", 20, 500), upper=10))
        4
    """
    previous_m, previous = 0, 0.0
    for m in range(1, upper + 1):
        reading = reference(m)
        if reading >= value:
            share = (value - previous) / max(reading - previous, 1e-12)
            return float(previous_m + share * (m - previous_m))
        previous_m, previous = m, reading
    return float(upper)


def _rule_estimator(rule: str, neighbours: int, n: int) -> tuple[int, str]:
    """The neighbours (at most ``n - 1``) and the raw estimator's name a ``rule`` of
    ``LOCAL_RULES`` reads ``n`` points with; an unknown rule is an error naming the known ones."""
    if rule not in LOCAL_RULES:
        raise ValueError(f"local rule: unknown {rule!r}; known: {', '.join(LOCAL_RULES)}")
    return min(neighbours, n - 1), rule.removesuffix("-cal")


@dataclass(frozen=True)
class LocalDimension:
    """A local estimate: the pooled value and its spread over points."""

    value: float  # the estimate (calibrated where the rule says so)
    spread: float  # standard deviation of the per-point estimates, on the same scale
    rule: str  # the rule that read it (one of LOCAL_RULES)


def local_dimension(
    points: np.ndarray, rule: str = "mle-cal", neighbours: int = LOCAL_NEIGHBOURS
) -> LocalDimension:
    """The local dimension of ``points`` ``(n, D)`` by ``rule`` (see ``LOCAL_RULES``).

    A ``-cal`` rule calibrates the pooled value against uniform cubes of ``n`` points and at
    most ``D`` dimensions (``calibrate``). A reading that rounds to ``D`` or more is then held
    to ``filled_directions(points)``: the directions the points fill locally (a sphere
    ``S^d`` in ``R^(d+1)`` reads ``d`` where its calibrated MLE reads ``d + 1``). The per-point
    values are scaled by the same factor as the pooled one before taking their spread.
    One-dimensional points read 1 (nothing to count).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> cube = np.c_[rng.uniform(size=(1000, 6)), np.zeros((1000, 4))]
        >>> raw, cal = local_dimension(cube, "mle"), local_dimension(cube, "mle-cal")
        >>> round(raw.value, 1) < 6, round(cal.value)
        (True, 6)
        >>> local_dimension(cube, "pca")
        Traceback (most recent call last):
        ...
        ValueError: local rule: unknown 'pca'; known: mle, mle-cal, twonn, twonn-cal, lpca
    """
    x = np.asarray(points, dtype=np.float64)
    n, dim = x.shape
    k, name = _rule_estimator(rule, neighbours, n)
    if dim == 1:
        return LocalDimension(1.0, 0.0, rule)
    if n < 3:
        raise ValueError(f"local dimension: needs at least 3 points, got {n}")
    value, per_point = _estimators(k)[name](x)
    if not np.isfinite(value):
        raise ValueError("local dimension: the points have no distinct nearest neighbours")
    read = value
    if rule.endswith("-cal"):
        value = calibrate(value, functools.partial(cube_reading, name, k, n), upper=dim)
    if value >= dim - 0.5:
        value = min(value, float(filled_directions(x)))
    per_point = per_point * (value / max(read, 1e-12))
    return LocalDimension(float(value), float(np.std(per_point)), rule)


def fills_prior(
    white: np.ndarray, rule: str = LOCAL_RULE, neighbours: int = LOCAL_NEIGHBOURS
) -> bool:
    """Whether codes ``(n, K)`` whitened by the prior's variances fill all ``K`` directions as
    the prior's own draws do: the rule's raw estimator reads on them at least ``PRIOR_MATCH``
    of what it reads on ``n`` standard Gaussian draws in ``K`` dimensions.

    Example:
        >>> rng = np.random.default_rng(3)
        >>> fills_prior(rng.standard_normal((1000, 12)))
        True
        >>> t = rng.standard_normal((1000, 6))
        >>> fills_prior(np.c_[t, np.sin(t)] / np.sqrt(0.7))  # a 6-D set curved through 12
        False
    """
    x = np.asarray(white, dtype=np.float64)
    n, dim = x.shape
    k, name = _rule_estimator(rule, neighbours, n)
    value = _estimators(k)[name](x)[0]
    return bool(np.isfinite(value) and value >= PRIOR_MATCH * gaussian_reading(name, k, n, dim))


def code_dimension(
    codes: np.ndarray, variances: np.ndarray, rule: str = LOCAL_RULE
) -> LocalDimension:
    """The local dimension of a fit's codes ``(n, K)`` in the ``K`` kept directions of
    ``A A^T``, whose eigenvalues there are ``variances`` ``(K,)``: ``K`` where the codes
    whitened by them fill the prior's directions (``fills_prior``), else
    ``local_dimension(codes, rule)`` (the cube calibration, held to the directions the
    unwhitened codes fill).

    Whitening makes the test a property of the model's density: for a linear ``L`` of
    determinant one, the spread KL cannot tell ``(g, Sigma)`` from ``(L g, L Sigma L^T)``, and
    both whiten to a rotation of the same codes.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> scale = np.array([3.0, 2.0, 1.0, 0.5] * 5)
        >>> flat = rng.standard_normal((1000, 20)) * scale  # the prior's draws in 20-D
        >>> round(local_dimension(flat).value), round(code_dimension(flat, scale**2).value)
        (15, 20)
    """
    local = local_dimension(codes, rule)
    dim = np.shape(codes)[1]
    if dim < 2 or local.value >= dim - 0.5:
        return local
    white = np.asarray(codes, dtype=np.float64) / np.sqrt(np.maximum(variances, 1e-300))
    if not fills_prior(white, rule):
        return local
    return LocalDimension(float(dim), local.spread * dim / max(local.value, 1e-12), rule)


def headline_dimension(rank: int, local: float) -> int:
    """The estimate a fit reports: the local dimension rounded (halves up), at least 1 and at
    most the rank ``K`` of ``A A^T``: ``min(K, max(1, floor(local + 1/2)))``.

    The rank counts the flat dimensions the flow needs, which a closed or curved manifold
    exceeds (a sphere ``S^d`` needs ``d + 1``); the codes in those ``K`` directions are locally
    d-dimensional. A rank of 0 (nothing used) stays 0.

    Example:
        >>> headline_dimension(3, 2.2), headline_dimension(6, 7.4), headline_dimension(0, 1.0)
        (2, 6, 0)
    """
    if rank < 1:
        return rank
    return min(rank, max(1, int(np.floor(local + 0.5))))
