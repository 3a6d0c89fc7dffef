"""A second held-out set, fixed on 2026-12-06 (afternoon) before the second round of readout work.

The first held-out set (``heldout_2026_12_06.py``) was read at the end of the first round; its
results are development data now. This set's kinds appear in none of: the development job files
(``jobs/accuracy*.yaml``), scikit-dimension's benchmark manifolds, or the first held-out set:
a Grassmannian of planes, a Klein bottle, a product of two 2-spheres, a trefoil knot, a
heavy-tailed linear set, images of a moving bar, a quadratic 12-D graph, an ellipsoid, a 20-D
ball, and signals made of three sines of free phase. Each case is written as a user's ``.npy``
array of 2,500 points beside ``manifest.json`` (name, true ``d``, ambient ``D``); a survey reads
them with the project's defaults for a user's array and ``data.n = 2000``, so the other 500 rows
are held out.

Read once, at the end of the work; never tune on what it gives. It was read on 2026-12-07, once
readout ``rank-local/4`` was fixed (the README's held-out column): development data since.

Run: python benchmarks/heldout_2026_12_06_b.py OUT_DIR
"""

from __future__ import annotations

import numpy as np
from heldout_2026_12_06 import N, main, rotate, write  # beside this file

__all__ = ["CASES", "generate"]

SEED = 2026120602


def _grassmannian(rng: np.random.Generator) -> np.ndarray:
    """G(2, 4): planes in R^4 as their 4x4 orthogonal projectors, flattened (d = 4, D = 16)."""
    q, _ = np.linalg.qr(rng.standard_normal((N, 4, 2)))
    return (q @ q.transpose(0, 2, 1)).reshape(N, 16)


def _klein(rng: np.random.Generator) -> np.ndarray:
    """The Klein bottle's flat embedding in R^4, turned in R^10 (d = 2)."""
    u, v = rng.uniform(0, 2 * np.pi, (2, N))
    r = 1.0 + 0.5 * np.cos(v)
    x = np.column_stack([r * np.cos(u), r * np.sin(u),
                         0.5 * np.sin(v) * np.cos(u / 2), 0.5 * np.sin(v) * np.sin(u / 2)])
    return rotate(x, 10, rng)


def _two_spheres(rng: np.random.Generator) -> np.ndarray:
    """S^2 x S^2 (radii 1 and 0.5) in R^6, turned in R^12 (d = 4)."""
    a = rng.standard_normal((N, 3))
    b = rng.standard_normal((N, 3))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b *= 0.5 / np.linalg.norm(b, axis=1, keepdims=True)
    return rotate(np.concatenate([a, b], axis=1), 12, rng)


def _trefoil(rng: np.random.Generator) -> np.ndarray:
    """A trefoil knot (a closed curve, d = 1) in R^3, turned in R^8."""
    t = rng.uniform(0, 2 * np.pi, N)
    x = np.column_stack([np.sin(t) + 2 * np.sin(2 * t), np.cos(t) - 2 * np.cos(2 * t),
                         -np.sin(3 * t)])
    return rotate(x, 8, rng)


def _heavy_tailed(rng: np.random.Generator) -> np.ndarray:
    """A 5-D Student-t (3 degrees of freedom) cloud on a linear subspace of R^12 (d = 5)."""
    return rotate(rng.standard_t(3, (N, 5)), 12, rng)


def _bars(rng: np.random.Generator) -> np.ndarray:
    """16x16 images of a soft bar of fixed length at a free centre and angle (d = 3), 256-D."""
    grid = np.arange(16) + 0.5
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    centre = rng.uniform(5, 11, (N, 2))
    angle = rng.uniform(0, np.pi, N)
    dy, dx = yy[None] - centre[:, 0, None, None], xx[None] - centre[:, 1, None, None]
    along = dx * np.cos(angle)[:, None, None] + dy * np.sin(angle)[:, None, None]
    across = -dx * np.sin(angle)[:, None, None] + dy * np.cos(angle)[:, None, None]
    bar = np.exp(-across**2 / (2 * 0.8**2)) / (1 + np.exp(2 * (np.abs(along) - 4)))
    return bar.reshape(N, 256)


def _quadratic_graph(rng: np.random.Generator) -> np.ndarray:
    """The graph of random quadratic forms [-1, 1]^12 -> R^18, in R^30 (d = 12)."""
    x = rng.uniform(-1, 1, (N, 12))
    forms = rng.standard_normal((18, 12, 12)) / 12
    y = np.einsum("ni,kij,nj->nk", x, forms, x)
    return rotate(np.concatenate([x, y], axis=1), 30, rng)


def _ellipsoid(rng: np.random.Generator) -> np.ndarray:
    """A 4-D ellipsoid's surface, semi-axes 1 down to 0.3 (log-even), in R^5 turned in R^15."""
    u = rng.standard_normal((N, 5))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return rotate(u * np.geomspace(1.0, 0.3, 5), 15, rng)


def _ball(rng: np.random.Generator) -> np.ndarray:
    """The uniform 20-D unit ball in R^25 (d = 20)."""
    u = rng.standard_normal((N, 20))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return rotate(u * rng.uniform(0, 1, (N, 1)) ** (1 / 20), 25, rng)


def _three_sines(rng: np.random.Generator) -> np.ndarray:
    """Signals of 64 samples: three sines (2, 5 and 9 cycles) of free phase (d = 3)."""
    t = np.arange(64) / 64
    phases = rng.uniform(0, 2 * np.pi, (N, 3))
    return sum(np.sin(2 * np.pi * f * t[None] + phases[:, k, None])
               for k, f in enumerate((2, 5, 9)))


#: name -> (true dimension, maker)
CASES = {
    "grassmannian-4-in-16": (4, _grassmannian),
    "klein-2-in-10": (2, _klein),
    "two_spheres-4-in-12": (4, _two_spheres),
    "trefoil-1-in-8": (1, _trefoil),
    "heavy_tailed-5-in-12": (5, _heavy_tailed),
    "bars-3-in-256": (3, _bars),
    "quadratic_graph-12-in-30": (12, _quadratic_graph),
    "ellipsoid-4-in-15": (4, _ellipsoid),
    "ball-20-in-25": (20, _ball),
    "three_sines-3-in-64": (3, _three_sines),
}


def generate(out) -> list[dict]:
    """This set's cases written to ``out`` (see ``heldout_2026_12_06.write``)."""
    return write(CASES, SEED, out)


if __name__ == "__main__":
    main(generate, __doc__)
