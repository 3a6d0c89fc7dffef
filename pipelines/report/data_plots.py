"""Figures of the data a survey fits and of what a fitted model made of them, each a
``matplotlib.figure.Figure`` (no pyplot state): points (``data_figure``), images
(``image_grid_figure``) and a model's samples and latent projection from the artifacts a fit
keeps (``model_figure``, ``mflow.fit.fit_artifacts``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

__all__ = ["data_figure", "image_grid_figure", "model_figure"]


def data_figure(x: np.ndarray, title: str = "data", max_points: int = 2000) -> Figure:
    """2-D or 3-D points as a scatter plot."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] not in (2, 3):
        raise ValueError(f"data_figure: expected points of shape (n, 2) or (n, 3), got {x.shape}")
    x = x[:max_points]
    fig = Figure(figsize=(3.6, 3.4))
    if x.shape[1] == 2:
        ax = fig.add_subplot()
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
        ax.set_aspect("equal", adjustable="datalim")
    else:
        ax = fig.add_subplot(projection="3d")
        ax.scatter(x[:, 0], x[:, 1], x[:, 2], s=2, alpha=0.5, c=x[:, 2], cmap="viridis")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def image_grid_figure(images: np.ndarray, title: str = "", columns: int = 8) -> Figure:
    """A grid of images ``(n, C, H, W)`` (grey for one channel, RGB for three), tiled into one
    picture with a one-pixel white margin."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"image_grid_figure: expected (n, 1 or 3, H, W), got {images.shape}")
    n, channels, height, width = images.shape
    columns = max(1, min(columns, n))
    rows = max(1, math.ceil(n / columns))
    lo, hi = float(np.min(images)), float(np.max(images))
    scaled = (images - lo) / (hi - lo) if hi > lo else np.zeros_like(images)
    tiles = np.ones((rows * (height + 1) + 1, columns * (width + 1) + 1, channels))
    for i in range(n):
        r, c = divmod(i, columns)
        top, left = 1 + r * (height + 1), 1 + c * (width + 1)
        tiles[top : top + height, left : left + width] = np.moveaxis(scaled[i], 0, -1)
    fig = Figure(figsize=(columns * 0.6 + 0.2, rows * 0.6 + (0.5 if title else 0.2)))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 - (0.4 / (rows * 0.6 + 0.5) if title else 0)))
    ax.axis("off")
    ax.imshow(tiles[..., 0] if channels == 1 else tiles, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def model_figure(x: np.ndarray, artifacts: Mapping[str, np.ndarray], title: str = "") -> Figure:
    """What a trained model made of data ``x``, from its kept ``mflow.fit.fit_artifacts``.

    Images: a grid of model samples, clipped to the data's range. Vectors (2-D or 3-D): the
    data, the model's samples ``g^{-1}(z)``, ``z ~ N(0, A A^T)``, and the latent projection
    ``g(x) E_k`` (a histogram for ``k = 1``, else its first two coordinates). Other vectors:
    the latent projection alone.
    """
    samples, projection = artifacts["samples"], artifacts["projection"]
    if x.ndim == 4:
        clipped = np.clip(samples.astype(np.float64), float(x.min()), float(x.max()))
        return image_grid_figure(clipped, title or "model samples")
    # Both panels show the data's box (10% margin): a few samples from the flow's far tail
    # would otherwise set the scale and flatten the rest into a line.
    low, high = x.min(axis=0), x.max(axis=0)
    low, high = low - 0.1 * (high - low), high + 0.1 * (high - low)
    inside = np.all((samples >= low) & (samples <= high), axis=1)
    outside = int((~inside).sum())
    sample_title = "model samples" + (f" ({outside} outside, not drawn)" if outside else "")
    panels = [("data", x), (sample_title, samples[inside])] if x.shape[1] in (2, 3) else []
    fig = Figure(figsize=(3 * (len(panels) + 1), 3))
    for i, (name, points) in enumerate(panels):
        if x.shape[1] == 3:
            ax = fig.add_subplot(1, len(panels) + 1, i + 1, projection="3d")
            ax.scatter(points[:, 0], points[:, 1], points[:, 2], s=2, alpha=0.5)
            ax.set_zlim(low[2], high[2])
        else:
            ax = fig.add_subplot(1, len(panels) + 1, i + 1)
            ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5)
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        ax.set_title(name, fontsize=9)
    ax = fig.add_subplot(1, len(panels) + 1, len(panels) + 1)
    if projection.shape[1] == 1:
        ax.hist(projection[:, 0], bins=50)
    else:
        ax.scatter(projection[:, 0], projection[:, 1], s=2, alpha=0.5)
    ax.set_title(f"latent projection (k = {projection.shape[1]})", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
