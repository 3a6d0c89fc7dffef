"""Manifolds of known dimension, built in closed form: sphere, torus, swiss roll, helix, warped
subspace, hypercube and Gaussian affine subspace, each embedded in R^D by a random rotation.

Every family takes its intrinsic dimension ``d`` from ``DataSpec.latent_dim`` and its ambient
dimension ``D`` from ``DataSpec.ambient_dim`` (``None``: the family's smallest, ``m``). A family
first draws ``n`` points ``y`` in its own coordinates in ``R^m``; they are padded with ``D - m``
zeros and rotated by a Haar-random orthogonal ``Q`` (``x = [y, 0] Q^T``), so the manifold lies
in a random ``m``-dimensional subspace of ``R^D`` and no coordinate is special. Then, with
``DataSpec.standardize`` (the default), ``x`` is centred and divided by its standard
deviation along the first principal axis (``mflow.datasets.arrays.standardize``), the scale
the default noise schedule is written for, and the same whatever ``D`` is. ``DataSpec.seed``
draws the points, the rotation and any random part of the shape (the warp): another seed is
another instance of the family.

==================  ==========================================  =====================
name                construction (``d`` = latent_dim)           own dimension ``m``
==================  ==========================================  =====================
``sphere``          unit d-sphere, uniform                      ``d + 1``
``torus``           product of d unit circles (flat torus)      ``2 d``
``swiss_roll``      spiral ``t (cos t, sin t)`` x (d-1)-cube     ``d + 1``
``helix``           product of d circular helices               ``3 d``
``warped_subspace`` graph of a smooth sine warp over a d-cube   ``2 d``
``hypercube``       uniform d-cube                              ``d``
``affine``          standard Gaussian in a d-dim subspace       ``d``
==================  ==========================================  =====================
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mflow.config import DataSpec
from mflow.datasets.arrays import STANDARDIZE_VERSION, standardize
from mflow.datasets.registry import Dataset, register

__all__ = [
    "OWN_DIMENSIONS",
    "affine",
    "embed",
    "helix",
    "hypercube",
    "rotation",
    "sphere",
    "swiss_roll",
    "torus",
    "warped_subspace",
]

#: The own dimension ``m`` of each family of intrinsic dimension ``d`` (the table above): its
#: points' dimension where ``DataSpec.ambient_dim`` is None, known without building them.
OWN_DIMENSIONS: dict[str, Callable[[int], int]] = {
    "sphere": lambda d: d + 1, "torus": lambda d: 2 * d, "swiss_roll": lambda d: d + 1,
    "helix": lambda d: 3 * d, "warped_subspace": lambda d: 2 * d, "hypercube": lambda d: d,
    "affine": lambda d: d,
}
HELIX_TURNS = 2.0  # turns of each helix
HELIX_PITCH = 1.0  # rise per turn of each helix (its radius is 1)
ROLL_HEIGHT = 21.0  # side of the swiss roll's flat directions (scikit-learn's roll)
WARP_AMPLITUDE = 0.5  # amplitude of the warped subspace's sines (the cube has side 2)
WARP_FREQUENCY = 2.0  # angular frequency of those sines along unit directions


def rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random orthogonal ``dim x dim`` matrix.

    ``Q R = G`` with ``G`` a standard Gaussian matrix; multiplying each column of ``Q`` by the
    sign of ``R``'s diagonal makes the law of ``Q`` uniform on O(dim) (Mezzadri 2007).

    Example:
        >>> q = rotation(4, np.random.default_rng(0))
        >>> bool(np.allclose(q @ q.T, np.eye(4)))
        True
    """
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def embed(y: np.ndarray, ambient_dim: int, rng: np.random.Generator) -> np.ndarray:
    """``[y, 0] Q^T``: pad ``(n, m)`` points with zeros to ``ambient_dim`` columns and rotate by
    a Haar-random ``Q`` drawn from ``rng``. Distances between points are kept.

    Example:
        >>> y = np.random.default_rng(0).standard_normal((5, 2))
        >>> x = embed(y, 6, np.random.default_rng(1))
        >>> x.shape, bool(np.allclose(np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)))
        ((5, 6), True)
    """
    n, m = y.shape
    if ambient_dim < m:
        raise ValueError(f"embed: ambient_dim {ambient_dim} < the points' {m} coordinates")
    padded = np.concatenate([y, np.zeros((n, ambient_dim - m))], axis=1)
    return padded @ rotation(ambient_dim, rng).T


def _intrinsic(spec: DataSpec) -> int:
    if spec.latent_dim < 1:
        raise ValueError(
            f"data.latent_dim: the intrinsic dimension of {spec.dataset!r} must be >= 1, "
            f"got {spec.latent_dim}"
        )
    return spec.latent_dim


def _finish(spec: DataSpec, y: np.ndarray, factors: dict[str, np.ndarray]) -> Dataset:
    """Embed the family's points ``y`` in ``R^D`` (checking ``D``), standardize, wrap."""
    own = y.shape[1]
    ambient = own if spec.ambient_dim is None else spec.ambient_dim
    if ambient < own:
        raise ValueError(
            f"data.ambient_dim: {spec.dataset!r} of intrinsic dimension {spec.latent_dim} "
            f"(data.latent_dim) needs at least {own} ambient dimensions, got {ambient}"
        )
    x = embed(y, ambient, np.random.default_rng([spec.seed, 1]))
    if spec.standardize:
        x = standardize(x, f"data.dataset {spec.dataset!r}")
    return Dataset(spec.dataset, x, true_dim=spec.latent_dim, factors=factors)


def _points(spec: DataSpec) -> np.random.Generator:
    """The generator of the points (the rotation and the warp use other streams)."""
    return np.random.default_rng([spec.seed, 0])


@register("sphere", version=STANDARDIZE_VERSION)
def sphere(spec: DataSpec) -> Dataset:
    """The unit d-sphere ``S^d = {y in R^(d+1): |y| = 1}``, uniform: ``y = g / |g|``,
    ``g ~ N(0, I_(d+1))``. ``factors['y']``: the points on the sphere, before embedding.

    Example:
        >>> data = sphere(DataSpec("sphere", n=100, latent_dim=2, ambient_dim=5))
        >>> data.x.shape, data.true_dim
        ((100, 5), 2)
    """
    d = _intrinsic(spec)
    g = _points(spec).standard_normal((spec.n, d + 1))
    y = g / np.linalg.norm(g, axis=1, keepdims=True)
    return _finish(spec, y, {"y": y})


@register("torus", version=STANDARDIZE_VERSION)
def torus(spec: DataSpec) -> Dataset:
    """The flat d-torus, a product of d unit circles: angles ``theta ~ U(0, 2 pi)^d`` and
    ``y = (cos theta_1, sin theta_1, ..., cos theta_d, sin theta_d)`` in ``R^(2d)``
    (uniform on the torus). ``factors['theta']``: the angles ``(n, d)``.
    """
    d = _intrinsic(spec)
    theta = _points(spec).uniform(0.0, 2 * np.pi, size=(spec.n, d))
    y = np.stack([np.cos(theta), np.sin(theta)], axis=2).reshape(spec.n, 2 * d)
    return _finish(spec, y, {"theta": theta})


@register("swiss_roll", version=STANDARDIZE_VERSION)
def swiss_roll(spec: DataSpec) -> Dataset:
    """scikit-learn's swiss roll, with ``d - 1`` flat directions (``d = 2``: the classic).

    ``t ~ U(3 pi / 2, 9 pi / 2)`` (one and a half turns of the spiral ``t (cos t, sin t)``),
    ``h ~ U(0, 21)^(d-1)``; ``y = (t cos t, h, t sin t)`` in ``R^(d+1)``. As in scikit-learn,
    ``t`` is uniform, so the points are denser near the centre of the roll.
    ``factors['t']`` and ``factors['h']`` ``(n, d - 1)``.
    """
    d = _intrinsic(spec)
    rng = _points(spec)
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=spec.n))
    h = ROLL_HEIGHT * rng.uniform(size=(spec.n, d - 1))
    y = np.concatenate([(t * np.cos(t))[:, None], h, (t * np.sin(t))[:, None]], axis=1)
    return _finish(spec, y, {"t": t, "h": h})


@register("helix", version=STANDARDIZE_VERSION)
def helix(spec: DataSpec) -> Dataset:
    """A circular helix (``d = 1``), or a product of d of them: a curve of 2 turns of radius 1
    and rise 1 per turn, ``(cos t, sin t, t / (2 pi))`` with ``t ~ U(0, 4 pi)`` (uniform in arc
    length), one per intrinsic direction, in ``R^(3d)``. ``factors['t']``: ``(n, d)``.
    """
    d = _intrinsic(spec)
    t = _points(spec).uniform(0.0, 2 * np.pi * HELIX_TURNS, size=(spec.n, d))
    parts = [np.cos(t), np.sin(t), HELIX_PITCH * t / (2 * np.pi)]
    y = np.stack(parts, axis=2).reshape(spec.n, 3 * d)
    return _finish(spec, y, {"t": t})


@register("warped_subspace", version=STANDARDIZE_VERSION)
def warped_subspace(spec: DataSpec) -> Dataset:
    """A d-dimensional affine subspace bent by a smooth warp: the graph of ``f: R^d -> R^d``.

    ``u ~ U(-1, 1)^d``; ``f_j(u) = 0.5 sin(2 v_j . u + b_j)`` with random unit directions
    ``v_j`` and phases ``b_j ~ U(0, 2 pi)`` (drawn from the seed); ``y = (u, f(u))`` in
    ``R^(2d)``. A graph never crosses itself, so it is a d-manifold; its curvature is up to
    ``0.5 * 2^2 = 2`` per warp direction. ``factors['u']``: ``(n, d)``.
    """
    d = _intrinsic(spec)
    u = _points(spec).uniform(-1.0, 1.0, size=(spec.n, d))
    shape = np.random.default_rng([spec.seed, 2])
    v = shape.standard_normal((d, d))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    b = shape.uniform(0.0, 2 * np.pi, size=d)
    warp = WARP_AMPLITUDE * np.sin(WARP_FREQUENCY * u @ v.T + b)
    return _finish(spec, np.concatenate([u, warp], axis=1), {"u": u})


@register("hypercube", version=STANDARDIZE_VERSION)
def hypercube(spec: DataSpec) -> Dataset:
    """The uniform d-cube ``[0, 1]^d`` (flat, with edges and corners), in ``R^d``.
    ``factors['u']``: the points ``(n, d)``.
    """
    d = _intrinsic(spec)
    u = _points(spec).uniform(size=(spec.n, d))
    return _finish(spec, u, {"u": u})


@register("affine", version=STANDARDIZE_VERSION)
def affine(spec: DataSpec) -> Dataset:
    """A d-dimensional affine subspace with a standard Gaussian density: ``u ~ N(0, I_d)``, in
    ``R^d``. Flat like the hypercube, but without edges and with a density that falls off, which
    biases nearest-neighbour estimators low in high ``d``. ``factors['u']``: ``(n, d)``.

    Example:
        >>> affine(DataSpec("affine", n=50, latent_dim=3, ambient_dim=10)).x.shape
        (50, 10)
    """
    d = _intrinsic(spec)
    u = _points(spec).standard_normal((spec.n, d))
    return _finish(spec, u, {"u": u})
