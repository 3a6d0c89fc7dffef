"""Synthetic image data whose dimension is known: the fading square (1), the moving glyph (1-5)."""

from __future__ import annotations

import numpy as np

from mflow.config import DataSpec
from mflow.datasets.registry import Dataset, register

__all__ = [
    "GLYPH_FACTORS",
    "GLYPH_SIZE",
    "GLYPH_STROKES",
    "SQUARE_SIZE",
    "SQUARE_TOP_LEFT",
    "fading_square",
    "moving_glyph",
]

SQUARE_SIZE = 6  # side of the grey square, in pixels
SQUARE_TOP_LEFT = (13, 13)  # (row, column) of its top-left pixel: centred in 32x32


@register("fading_square", shape=(1, 32, 32))
def fading_square(spec: DataSpec) -> Dataset:
    """32x32 black images, each with one 6x6 square of grey value ``U(0, 1)`` at a fixed place.

    The only factor of variation is the grey value, so the images lie on a line segment of
    ``R^1024``: true dimension 1. Shape ``(n, 1, 32, 32)``; ``factors['grey']`` holds the values.

    Example:
        >>> d = fading_square(DataSpec(n=4))
        >>> d.x.shape, d.true_dim, bool(d.x[0, 0, 15, 15] == d.factors["grey"][0])
        ((4, 1, 32, 32), 1, True)
    """
    grey = np.random.default_rng(spec.seed).uniform(size=spec.n)
    x = np.zeros((spec.n, 1, 32, 32))
    r, c = SQUARE_TOP_LEFT
    x[:, 0, r : r + SQUARE_SIZE, c : c + SQUARE_SIZE] = grey[:, None, None]
    return Dataset("fading_square", x, true_dim=1, factors={"grey": grey})


# The glyph: strokes of a "7" with a crossbar and a foot, in a [-1, 1]^2 box (x right, y down).
# It has no symmetry, so rotation, scale, shear and shifts all change the image.
GLYPH_STROKES = np.array([
    [[-0.55, -0.6], [0.55, -0.6]],  # top bar
    [[0.55, -0.6], [-0.1, 0.7]],  # stem
    [[-0.3, 0.05], [0.4, 0.05]],  # crossbar
    [[-0.1, 0.7], [0.25, 0.7]],  # foot
])
#: The factors of ``moving_glyph`` in the order ``latent_dim`` takes them, with their ranges.
GLYPH_FACTORS = {
    "rotation": (-0.5, 0.5),  # radians, about +-30 degrees
    "scale": (0.85, 1.15),
    "shift_x": (-0.15, 0.15),  # in units of the half-width (about +-2 pixels at 28)
    "shift_y": (-0.15, 0.15),
    "thickness": (0.06, 0.11),  # stroke width (std of the Gaussian profile), half-widths
}
GLYPH_SIZE = 28


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from ``points (P, 2)`` to each segment ``a (n, 2) -> b (n, 2)``: ``(n, P)``."""
    ab = b - a
    ap = points[None, :, :] - a[:, None, :]
    t = np.clip((ap * ab[:, None, :]).sum(-1) / (ab**2).sum(-1)[:, None], 0.0, 1.0)
    return np.linalg.norm(ap - t[..., None] * ab[:, None, :], axis=-1)


@register("moving_glyph", shape=(1, 28, 28))
def moving_glyph(spec: DataSpec) -> Dataset:
    """28x28 images of one glyph moved by ``k = latent_dim`` continuous factors (1 to 5):
    rotation, then scale, horizontal and vertical shift, stroke thickness, in that order
    (``GLYPH_FACTORS``), each uniform on its range; the factors beyond ``k`` stay at their
    midpoints. Strokes are drawn with a Gaussian profile, so each image is a smooth function
    of the factors: the images lie on a ``k``-dimensional manifold of ``R^784``.

    Like rotated and scaled MNIST digits, but drawn here, so no data files are needed.

    Example:
        >>> d = moving_glyph(DataSpec("moving_glyph", n=3, latent_dim=2))
        >>> d.x.shape, d.true_dim, sorted(d.factors)
        ((3, 1, 28, 28), 2, ['rotation', 'scale'])
    """
    k = spec.latent_dim
    if not 1 <= k <= len(GLYPH_FACTORS):
        raise ValueError(f"data.latent_dim: moving_glyph has 1 to {len(GLYPH_FACTORS)} factors, "
                         f"got {k}")
    rng = np.random.default_rng(spec.seed)
    values = {}
    for i, (name, (low, high)) in enumerate(GLYPH_FACTORS.items()):
        values[name] = (rng.uniform(low, high, spec.n) if i < k
                        else np.full(spec.n, (low + high) / 2))
    cos, sin = np.cos(values["rotation"]), np.sin(values["rotation"])
    scale = values["scale"][:, None, None]
    turn = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2) * scale
    shift = np.stack([values["shift_x"], values["shift_y"]], -1)
    grid = (np.arange(GLYPH_SIZE) + 0.5) / GLYPH_SIZE * 2 - 1
    pixels = np.stack(np.meshgrid(grid, grid, indexing="xy"), -1).reshape(-1, 2)
    x = np.zeros((spec.n, pixels.shape[0]))
    for a, b in GLYPH_STROKES:
        a_n = np.einsum("nij,j->ni", turn, a) + shift
        b_n = np.einsum("nij,j->ni", turn, b) + shift
        d = _segment_distance(pixels, a_n, b_n)
        x = np.maximum(x, np.exp(-0.5 * (d / values["thickness"][:, None]) ** 2))
    x = x.reshape(spec.n, 1, GLYPH_SIZE, GLYPH_SIZE)
    factors = {name: v for i, (name, v) in enumerate(values.items()) if i < k}
    return Dataset("moving_glyph", x, true_dim=k, factors=factors)
