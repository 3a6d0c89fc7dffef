"""A fourth held-out set, fixed on 2026-12-07 when the third was read, before any later work.

The first three held-out sets (``heldout_2026_12_06.py``, ``heldout_2026_12_06_b.py`` and
``heldout_2026_12_07.py``) have been read; their results are development data now. This set's
kinds appear in none of: the development job files (``jobs/accuracy*.yaml``),
scikit-dimension's benchmark manifolds, or the earlier sets: a saddle, Enneper's surface, a
cone, rank-two 3x3 matrices, symmetric positive-definite 3x3 matrices, the image of a cube
under a random tanh layer, soft-disc images, the moment curve, a hyperboloid sheet and a cap
of the 9-sphere. Each case is written as a user's ``.npy`` array of 2,500 points beside
``manifest.json`` (name, true ``d``, ambient ``D``); a survey reads them with the project's
defaults for a user's array and ``data.n = 2000``, so the other 500 rows are held out.

Read once, at the end of the work; never tune on what it gives.

Run: python benchmarks/heldout_2026_12_07_b.py OUT_DIR
"""

from __future__ import annotations

import numpy as np
from heldout_2026_12_06 import N, main, rotate, write  # beside this file

__all__ = ["CASES", "generate"]

SEED = 2026120702


def _saddle(rng: np.random.Generator) -> np.ndarray:
    """The hyperbolic paraboloid z = x^2 - y^2 over [-1, 1]^2 in R^3 turned in R^8 (d = 2)."""
    xy = rng.uniform(-1, 1, (N, 2))
    return rotate(np.column_stack([xy, xy[:, 0] ** 2 - xy[:, 1] ** 2]), 8, rng)


def _enneper(rng: np.random.Generator) -> np.ndarray:
    """Enneper's minimal surface over the disc of radius 1.2, in R^3 turned in R^15 (d = 2)."""
    r, t = 1.2 * np.sqrt(rng.uniform(0, 1, N)), rng.uniform(0, 2 * np.pi, N)
    u, v = r * np.cos(t), r * np.sin(t)
    x = np.column_stack([u - u**3 / 3 + u * v**2, v - v**3 / 3 + v * u**2, u**2 - v**2])
    return rotate(x, 15, rng)


def _cone(rng: np.random.Generator) -> np.ndarray:
    """The cone z = |(x, y)| over the unit disc (its apex a singular point), R^3 in R^10 (d = 2)."""
    r, t = np.sqrt(rng.uniform(0, 1, N)), rng.uniform(0, 2 * np.pi, N)
    return rotate(np.column_stack([r * np.cos(t), r * np.sin(t), r]), 10, rng)


def _rank_two(rng: np.random.Generator) -> np.ndarray:
    """3x3 matrices u1 v1^T + u2 v2^T of Gaussian vectors, flattened: the determinant-zero
    hypersurface (d = 8, D = 9)."""
    u, v = rng.standard_normal((N, 3, 2)), rng.standard_normal((N, 2, 3))
    return (u @ v).reshape(N, 9)


def _spd(rng: np.random.Generator) -> np.ndarray:
    """Symmetric positive-definite 3x3 matrices exp(S), S symmetric with N(0, 0.25) entries,
    flattened: an open set of the 6-D symmetric matrices in R^9 (d = 6)."""
    a = rng.normal(0, 0.5, (N, 3, 3))
    values, vectors = np.linalg.eigh((a + a.transpose(0, 2, 1)) / 2)
    m = vectors @ (np.exp(values)[:, :, None] * vectors.transpose(0, 2, 1))
    return m.reshape(N, 9)


def _tanh_layer(rng: np.random.Generator) -> np.ndarray:
    """tanh(W z + b) of z uniform in [-1, 1]^8, W a random 24 x 8 Gaussian map (d = 8)."""
    w, b = rng.normal(0, 1.5 / np.sqrt(8), (24, 8)), rng.normal(0, 0.3, 24)
    return np.tanh(rng.uniform(-1, 1, (N, 8)) @ w.T + b)


def _discs(rng: np.random.Generator) -> np.ndarray:
    """16x16 images of a soft-edged disc of free centre, radius (2-5 px) and brightness
    (0.5-1) (d = 4)."""
    grid = np.arange(16) + 0.5
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    centre = rng.uniform(4, 12, (N, 2))
    radius, bright = rng.uniform(2, 5, N), rng.uniform(0.5, 1, N)
    dist = np.hypot(xx[None] - centre[:, 0, None, None], yy[None] - centre[:, 1, None, None])
    image = bright[:, None, None] / (1 + np.exp((dist - radius[:, None, None]) / 0.7))
    return image.reshape(N, 256)


def _moment_curve(rng: np.random.Generator) -> np.ndarray:
    """The moment curve (t, t^2, ..., t^12) for t in [-1, 1] (d = 1, D = 12)."""
    t = rng.uniform(-1, 1, N)
    return t[:, None] ** np.arange(1, 13)[None]


def _hyperboloid(rng: np.random.Generator) -> np.ndarray:
    """The upper sheet of x0^2 - |x|^2 = 1, x in [-1.5, 1.5]^3, in R^4 turned in R^12 (d = 3)."""
    x = rng.uniform(-1.5, 1.5, (N, 3))
    return rotate(np.column_stack([np.sqrt(1 + (x**2).sum(axis=1)), x]), 12, rng)


def _cap(rng: np.random.Generator) -> np.ndarray:
    """The cap of the round 9-sphere within 60 degrees of a pole, R^10 turned in R^25 (d = 9):
    uniform on the sphere, kept where the pole's coordinate is at least cos 60 degrees."""
    kept = np.empty((0, 10))
    while len(kept) < N:
        u = rng.standard_normal((4 * N, 10))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        kept = np.concatenate([kept, u[u[:, 0] >= 0.5]])
    return rotate(kept[:N], 25, rng)


#: name -> (true dimension, maker)
CASES = {
    "saddle-2-in-8": (2, _saddle),
    "enneper-2-in-15": (2, _enneper),
    "cone-2-in-10": (2, _cone),
    "rank_two-8-in-9": (8, _rank_two),
    "spd-6-in-9": (6, _spd),
    "tanh_layer-8-in-24": (8, _tanh_layer),
    "discs-4-in-256": (4, _discs),
    "moment_curve-1-in-12": (1, _moment_curve),
    "hyperboloid-3-in-12": (3, _hyperboloid),
    "cap-9-in-25": (9, _cap),
}


def generate(out) -> list[dict]:
    """This set's cases written to ``out`` (see ``heldout_2026_12_06.write``)."""
    return write(CASES, SEED, out)


if __name__ == "__main__":
    main(generate, __doc__)
