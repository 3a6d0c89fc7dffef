"""Synthetic image data whose dimension is known: the fading square (true 1)."""

from __future__ import annotations

import numpy as np

from mflow.config import DataSpec
from mflow.datasets.registry import Dataset, register

__all__ = ["SQUARE_SIZE", "SQUARE_TOP_LEFT", "fading_square"]

SQUARE_SIZE = 6  # side of the grey square, in pixels
SQUARE_TOP_LEFT = (13, 13)  # (row, column) of its top-left pixel: centred in 32x32


@register("fading_square")
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
