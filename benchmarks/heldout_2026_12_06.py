"""A held-out set of manifolds of known dimension, fixed on 2026-12-06 before any readout tuning.

Kinds that neither the development job files (``jobs/accuracy*.yaml``) nor scikit-dimension's
benchmark manifolds contain: flat tori, the rotation group, a Veronese surface, graphs of random
smooth maps, an unevenly stretched Gaussian, moving-blob images, a product of a circle and a
sphere, and a sinusoidal embedding of a 15-cube. Each case is written as a user's ``.npy``
array of 2,500 points beside ``manifest.json`` (name, true ``d``, ambient ``D``), so a survey
reads them with the project's defaults for a user's array (``dataset: array``) and
``data.n = 2000``: it trains on 2,000 rows and the other 500 are held out.

Read once, at the end of the readout work; never tune on what it gives.

Run: python benchmarks/heldout_2026_12_06.py OUT_DIR
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["CASES", "generate", "main", "rotate", "write"]

N = 2500
SEED = 20261206


def rotate(x: np.ndarray, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` (n, D0) padded with zeros to ``dim`` columns and turned by a random rotation."""
    padded = np.zeros((x.shape[0], dim))
    padded[:, : x.shape[1]] = x
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return padded @ q


def _flat_torus(d: int, dim: int) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        angles = rng.uniform(0, 2 * np.pi, (N, d))
        return rotate(np.concatenate([np.cos(angles), np.sin(angles)], axis=1), dim, rng)

    return make


def _rotations(rng: np.random.Generator) -> np.ndarray:
    """SO(3), uniform (Haar), as flattened 3x3 matrices, turned in R^12."""
    q = rng.standard_normal((N, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    m = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                  2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                  2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=1)
    return rotate(m, 12, rng)


def _veronese(rng: np.random.Generator) -> np.ndarray:
    """The Veronese surface: S^2 -> R^6, u -> the upper triangle of u u^T (d = 2)."""
    u = rng.standard_normal((N, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    i, j = np.triu_indices(3)
    return (u[:, :, None] * u[:, None, :])[:, i, j]


def _graph(d: int, dim: int) -> Callable[[np.random.Generator], np.ndarray]:
    """The graph of a random two-layer tanh map [-1, 1]^d -> R^(dim - d)."""

    def make(rng: np.random.Generator) -> np.ndarray:
        x = rng.uniform(-1, 1, (N, d))
        w1 = rng.standard_normal((d, 32)) * 1.5
        w2 = rng.standard_normal((32, dim - d)) / np.sqrt(32)
        return rotate(np.concatenate([x, np.tanh(x @ w1) @ w2], axis=1), dim, rng)

    return make


def _stretched_gaussian(rng: np.random.Generator) -> np.ndarray:
    """An 8-D Gaussian with standard deviations 1 down to 0.1 (log-even), in R^20."""
    return rotate(rng.standard_normal((N, 8)) * np.geomspace(1.0, 0.1, 8), 20, rng)


def _blobs(rng: np.random.Generator) -> np.ndarray:
    """16x16 images of two Gaussian blobs at free positions (d = 4), flattened to 256."""
    grid = np.arange(16) + 0.5
    centres = rng.uniform(3, 13, (N, 2, 2))
    images = np.zeros((N, 16, 16))
    for b in range(2):
        dy = (grid[None, :] - centres[:, b, 0:1]) ** 2
        dx = (grid[None, :] - centres[:, b, 1:2]) ** 2
        images += np.exp(-(dy[:, :, None] + dx[:, None, :]) / (2 * 1.5**2))
    return images.reshape(N, 256)


def _circle_sphere(rng: np.random.Generator) -> np.ndarray:
    """S^1 x S^2 (radii 1 and 0.7) in R^5, turned in R^10 (d = 3)."""
    t = rng.uniform(0, 2 * np.pi, N)
    u = rng.standard_normal((N, 3))
    u *= 0.7 / np.linalg.norm(u, axis=1, keepdims=True)
    return rotate(np.column_stack([np.cos(t), np.sin(t), u]), 10, rng)


def _sine_cube(rng: np.random.Generator) -> np.ndarray:
    """A 15-cube mapped by x -> (x, sin(W x)) into R^40 (d = 15)."""
    x = rng.uniform(-1, 1, (N, 15))
    w = rng.standard_normal((15, 25)) / np.sqrt(15) * 2.0
    return rotate(np.concatenate([x, np.sin(x @ w)], axis=1), 40, rng)


#: name -> (true dimension, maker)
CASES: dict[str, tuple[int, Callable[[np.random.Generator], np.ndarray]]] = {
    "flat_torus-3-in-12": (3, _flat_torus(3, 12)),
    "flat_torus-6-in-16": (6, _flat_torus(6, 16)),
    "rotations-3-in-12": (3, _rotations),
    "veronese-2-in-6": (2, _veronese),
    "graph-4-in-16": (4, _graph(4, 16)),
    "graph-9-in-24": (9, _graph(9, 24)),
    "stretched_gaussian-8-in-20": (8, _stretched_gaussian),
    "blobs-4-in-256": (4, _blobs),
    "circle_sphere-3-in-10": (3, _circle_sphere),
    "sine_cube-15-in-40": (15, _sine_cube),
}


def write(cases: dict[str, tuple[int, Callable[[np.random.Generator], np.ndarray]]],
          seed: int, out: Path) -> list[dict]:
    """Write every case as ``out/NAME.npy`` and ``out/manifest.json``; return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for k, (name, (d, make)) in enumerate(sorted(cases.items())):
        x = make(np.random.default_rng([seed, k])).astype(np.float64)
        np.save(out / f"{name}.npy", x)
        manifest.append({"name": name, "true_dim": d, "ambient_dim": x.shape[1],
                         "path": f"{name}.npy"})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def generate(out: Path) -> list[dict]:
    """This set's cases written to ``out`` (see ``write``)."""
    return write(CASES, SEED, out)


def main(generate: Callable[[Path], list[dict]], doc: str) -> None:
    """The command line of a held-out set's module: write it to the folder given, list it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("out", type=Path)
    for row in generate(parser.parse_args().out):
        print(f"{row['name']:32s} d={row['true_dim']:3d} D={row['ambient_dim']}")


if __name__ == "__main__":
    main(generate, __doc__)
