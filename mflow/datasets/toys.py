"""The paper's low-dimensional toys: sine and line in 2-D (true 1), the S-curve in 3-D (true 2)."""

from __future__ import annotations

import numpy as np

from mflow.config import DataSpec
from mflow.datasets.registry import Dataset, register

__all__ = ["line", "scurve", "sine"]


@register("sine", shape=(2,))
def sine(spec: DataSpec) -> Dataset:
    """``x1 ~ N(0, 1)``, ``x2 = sin(2 x1)``: a 1-D curve in 2-D.

    Example:
        >>> sine(DataSpec(n=3)).true_dim
        1
    """
    t = np.random.default_rng(spec.seed).standard_normal(spec.n)
    return Dataset("sine", np.stack([t, np.sin(2 * t)], axis=1), true_dim=1, factors={"t": t})


@register("line", shape=(2,))
def line(spec: DataSpec) -> Dataset:
    """``x1 ~ N(0, 1)``, ``x2 = x1``: a 1-D line in 2-D."""
    t = np.random.default_rng(spec.seed).standard_normal(spec.n)
    return Dataset("line", np.stack([t, t], axis=1), true_dim=1, factors={"t": t})


@register("scurve", shape=(3,))
def scurve(spec: DataSpec) -> Dataset:
    """The 3-D S-curve (as scikit-learn's ``make_s_curve``), centred: a 2-D surface.

    ``t ~ U(-3 pi/2, 3 pi/2)``, ``h ~ U(0, 2)``; ``x = (sin t, h, sign(t)(cos t - 1))``, then
    the mean of the construction, ``(0, 1, 0)``, is subtracted.
    """
    rng = np.random.default_rng(spec.seed)
    t = 3 * np.pi * (rng.uniform(size=spec.n) - 0.5)
    h = 2.0 * rng.uniform(size=spec.n)
    x = np.stack([np.sin(t), h - 1.0, np.sign(t) * (np.cos(t) - 1.0)], axis=1)
    return Dataset("scurve", x, true_dim=2, factors={"t": t, "h": h})
