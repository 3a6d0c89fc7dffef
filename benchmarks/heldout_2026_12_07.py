"""A third held-out set, fixed on 2026-12-07 after readout ``rank-local/4``, before any later work.

The first two held-out sets (``heldout_2026_12_06.py`` and ``heldout_2026_12_06_b.py``) have been
read; their results are development data now. This set's kinds appear in none of: the
development job files (``jobs/accuracy*.yaml``), scikit-dimension's benchmark manifolds, or
either earlier set: the Stiefel manifold V(2, 3), a catenoid, a Lissajous knot, a uniform
15-simplex, a circle times a 5-cube, Gaussian clusters on a 6-D plane, grating images, a
helicoid, rank-one 4x4 matrices and a 4-sphere. Each case is written as a user's ``.npy`` array
of 2,500 points beside ``manifest.json`` (name, true ``d``, ambient ``D``); a survey reads them
with the project's defaults for a user's array and ``data.n = 2000``, so the other 500 rows are
held out.

Read once, at the end of the work; never tune on what it gives.

Run: python benchmarks/heldout_2026_12_07.py OUT_DIR
"""

from __future__ import annotations

import numpy as np
from heldout_2026_12_06 import N, main, rotate, write  # beside this file

__all__ = ["CASES", "generate"]

SEED = 2026120701


def _stiefel(rng: np.random.Generator) -> np.ndarray:
    """Orthonormal pairs of vectors in R^3, flattened (V(2, 3), d = 3, D = 6)."""
    q, _ = np.linalg.qr(rng.standard_normal((N, 3, 2)))
    return q.reshape(N, 6)


def _catenoid(rng: np.random.Generator) -> np.ndarray:
    """A catenoid, height in [-1, 1], in R^3 turned in R^12 (d = 2)."""
    v, u = rng.uniform(-1, 1, N), rng.uniform(0, 2 * np.pi, N)
    x = np.column_stack([np.cosh(v) * np.cos(u), np.cosh(v) * np.sin(u), v])
    return rotate(x, 12, rng)


def _lissajous(rng: np.random.Generator) -> np.ndarray:
    """A Lissajous knot (frequencies 3, 2, 7) in R^3 turned in R^10 (d = 1)."""
    t = rng.uniform(0, 2 * np.pi, N)
    x = np.column_stack([np.cos(3 * t + 0.7), np.cos(2 * t + 0.2), np.cos(7 * t)])
    return rotate(x, 10, rng)


def _simplex(rng: np.random.Generator) -> np.ndarray:
    """Uniform points of the standard 15-simplex in R^16 (d = 15)."""
    return rng.dirichlet(np.ones(16), N)


def _circle_cube(rng: np.random.Generator) -> np.ndarray:
    """A circle times a 5-cube, S^1 x [-1, 1]^5, in R^7 turned in R^20 (d = 6)."""
    angle = rng.uniform(0, 2 * np.pi, N)
    x = np.column_stack([np.cos(angle), np.sin(angle), rng.uniform(-1, 1, (N, 5))])
    return rotate(x, 20, rng)


def _clusters(rng: np.random.Generator) -> np.ndarray:
    """Five Gaussian clusters of unequal spread on a 6-D plane in R^30 (d = 6)."""
    centres = rng.normal(0, 4, (5, 6))
    which = rng.integers(0, 5, N)
    spread = np.array([0.5, 0.8, 1.0, 1.3, 1.6])[which, None]
    return rotate(centres[which] + spread * rng.standard_normal((N, 6)), 30, rng)


def _gratings(rng: np.random.Generator) -> np.ndarray:
    """16x16 images of a sine grating of free angle, wavelength (3-8 px) and phase (d = 3)."""
    grid = np.arange(16) + 0.5
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    angle = rng.uniform(0, np.pi, N)
    wavelength = rng.uniform(3, 8, N)
    phase = rng.uniform(0, 2 * np.pi, N)
    along = (xx[None] * np.cos(angle)[:, None, None] + yy[None] * np.sin(angle)[:, None, None])
    image = np.sin(2 * np.pi * along / wavelength[:, None, None] + phase[:, None, None])
    return image.reshape(N, 256)


def _helicoid(rng: np.random.Generator) -> np.ndarray:
    """A helicoid (one and a half turns, radius in [-1, 1]) in R^3 turned in R^9 (d = 2)."""
    r, t = rng.uniform(-1, 1, N), rng.uniform(0, 3 * np.pi, N)
    x = np.column_stack([r * np.cos(t), r * np.sin(t), 0.3 * t])
    return rotate(x, 9, rng)


def _rank_one(rng: np.random.Generator) -> np.ndarray:
    """Rank-one 4x4 matrices u v^T, u and v Gaussian, flattened (d = 7, D = 16)."""
    u, v = rng.standard_normal((N, 4)), rng.standard_normal((N, 4))
    return (u[:, :, None] * v[:, None, :]).reshape(N, 16)


def _sphere4(rng: np.random.Generator) -> np.ndarray:
    """The round 4-sphere in R^5 turned in R^20 (d = 4)."""
    u = rng.standard_normal((N, 5))
    return rotate(u / np.linalg.norm(u, axis=1, keepdims=True), 20, rng)


#: name -> (true dimension, maker)
CASES = {
    "stiefel-3-in-6": (3, _stiefel),
    "catenoid-2-in-12": (2, _catenoid),
    "lissajous-1-in-10": (1, _lissajous),
    "simplex-15-in-16": (15, _simplex),
    "circle_cube-6-in-20": (6, _circle_cube),
    "clusters-6-in-30": (6, _clusters),
    "gratings-3-in-256": (3, _gratings),
    "helicoid-2-in-9": (2, _helicoid),
    "rank_one-7-in-16": (7, _rank_one),
    "sphere4-4-in-20": (4, _sphere4),
}


def generate(out) -> list[dict]:
    """This set's cases written to ``out`` (see ``heldout_2026_12_06.write``)."""
    return write(CASES, SEED, out)


if __name__ == "__main__":
    main(generate, __doc__)
