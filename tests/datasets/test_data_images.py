"""The fading square, the moving glyph, and the registry across all datasets."""

from __future__ import annotations

import numpy as np
import pytest

from mflow.config import DataSpec
from mflow.datasets import DATASETS, load
from mflow.datasets.images import GLYPH_FACTORS, SQUARE_SIZE, SQUARE_TOP_LEFT


def test_fading_square_shape_dtype_and_metadata() -> None:
    d = load(DataSpec("fading_square", n=50, seed=3))
    assert d.x.shape == (50, 1, 32, 32) and d.x.dtype == np.float32
    assert d.true_dim == 1 and d.is_image and d.ambient_dim == 1024
    assert d.factors["grey"].shape == (50,)
    assert np.all((d.factors["grey"] >= 0) & (d.factors["grey"] <= 1))


def test_fading_square_is_one_grey_square_at_a_fixed_place() -> None:
    d = load(DataSpec("fading_square", n=20))
    r, c = SQUARE_TOP_LEFT
    square = d.x[:, 0, r : r + SQUARE_SIZE, c : c + SQUARE_SIZE]
    np.testing.assert_allclose(
        square, np.broadcast_to(d.factors["grey"][:, None, None], square.shape), rtol=1e-6
    )
    outside = d.x.copy()
    outside[:, 0, r : r + SQUARE_SIZE, c : c + SQUARE_SIZE] = 0
    assert not outside.any()
    # one factor: every image is grey * (the same mask)
    flat = d.x.reshape(20, -1).astype(np.float64)
    assert np.linalg.matrix_rank(flat) == 1


def test_fading_square_deterministic_by_seed() -> None:
    a, b, c = (load(DataSpec("fading_square", n=5, seed=s)).x for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_registry_lists_every_dataset_of_the_issue() -> None:
    wanted = {"sine", "line", "scurve", "fading_square", "mnist", "synthetic_mnist", "array"}
    assert wanted <= set(DATASETS)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'nope'") as e:
        load(DataSpec("nope"))
    for name in DATASETS:
        assert name in str(e.value)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_moving_glyph_has_as_many_factors_as_its_dimension(k: int) -> None:
    d = load(DataSpec("moving_glyph", n=40, latent_dim=k, seed=1))
    assert d.x.shape == (40, 1, 28, 28) and d.true_dim == k and len(d.factors) == k
    assert 0 <= d.x.min() and d.x.max() <= 1
    assert list(d.factors) == list(GLYPH_FACTORS)[:k]
    again = load(DataSpec("moving_glyph", n=40, latent_dim=k, seed=1)).x
    np.testing.assert_array_equal(d.x, again)


def test_moving_glyph_tangent_space_has_rank_k() -> None:
    # neighbours of one image: its k factors moved by tiny amounts span a k-dim tangent space
    d = load(DataSpec("moving_glyph", n=20000, latent_dim=3, seed=0)).x.reshape(20000, -1)
    d = d.astype(np.float64)
    near = d[np.argsort(np.linalg.norm(d - d[0], axis=1))[1:40]] - d[0]
    singular = np.linalg.svd(near, compute_uv=False)
    assert singular[2] > 3 * singular[3]  # three directions stand out (measured: 3.5)


def test_moving_glyph_refuses_more_factors_than_it_has() -> None:
    with pytest.raises(ValueError, match="latent_dim"):
        load(DataSpec("moving_glyph", n=5, latent_dim=6))
