"""Declared point shapes (``register(..., shape=)``) are the shapes the loaders return."""

from __future__ import annotations

import pytest

from mflow.config import DataSpec
from mflow.datasets import load, sample_shape
from mflow.datasets.registry import SAMPLE_SHAPES


@pytest.mark.parametrize(
    "spec",
    [DataSpec("sine", n=5), DataSpec("line", n=5), DataSpec("scurve", n=5),
     DataSpec("fading_square", n=5), DataSpec("moving_glyph", n=5, latent_dim=3)],
    ids=lambda s: s.dataset,
)
def test_a_declared_shape_is_the_loaded_shape(spec):
    assert sample_shape(spec) == load(spec).sample_shape


def test_every_image_set_declares_its_shape_and_files_do_not():
    assert {"mnist", "synthetic_mnist", "fading_square", "moving_glyph"} <= set(SAMPLE_SHAPES)
    assert sample_shape(DataSpec("array")) is None  # a user's file: known only by reading it
    assert sample_shape(DataSpec("sphere", latent_dim=3)) is None  # the shape follows the spec
