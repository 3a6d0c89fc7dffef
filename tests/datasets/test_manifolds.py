"""Constructed manifolds: shapes, true dimension, determinism, local dimension, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from mflow.config import DataSpec
from mflow.datasets import DATASETS, load, register
from mflow.datasets.manifolds import OWN_DIMENSIONS

# family -> its own dimension m for intrinsic dimension d: the product's table, which the
# shape tests below hold to what the loaders build (the footprint reads it without building)
OWN = OWN_DIMENSIONS
FAMILIES = sorted(OWN)


def _spec(name: str, d: int, ambient: int | None = None, **kw: object) -> DataSpec:
    return DataSpec(name, **{"n": 300, "latent_dim": d, "ambient_dim": ambient, **kw})


def _local_spectrum(x: np.ndarray, centre: int, k: int) -> np.ndarray:
    """Squared singular values of the ``k`` nearest neighbours of ``x[centre]``, centred."""
    near = np.argsort(np.linalg.norm(x - x[centre], axis=1))[:k]
    patch = x[near] - x[near].mean(axis=0)
    return np.linalg.svd(patch, compute_uv=False) ** 2


def test_every_family_is_registered_and_in_the_own_dimension_table() -> None:
    built_here = {name for name, fn in DATASETS.items()
                  if fn.__module__ == "mflow.datasets.manifolds"}
    assert set(FAMILIES) == built_here


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize(("d", "ambient"), [(1, None), (2, None), (2, 11), (3, 50)])
def test_shape_and_true_dim(name: str, d: int, ambient: int | None) -> None:
    data = load(_spec(name, d, ambient))
    assert data.x.shape == (300, ambient or OWN[name](d)) and data.x.dtype == np.float32
    assert data.true_dim == d and data.name == name
    assert all(len(v) == 300 for v in data.factors.values())


@pytest.mark.parametrize("name", FAMILIES)
def test_standardized_by_default(name: str) -> None:
    x = load(_spec(name, 2, 7)).x.astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-6)
    assert np.linalg.eigvalsh(np.cov(x.T, bias=True))[-1] == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_standardized_scale_does_not_depend_on_the_ambient_dimension(name: str) -> None:
    """The same points rotated into R^m and into R^40 come out at the same size."""
    own, high = load(_spec(name, 2, None)).x, load(_spec(name, 2, 40)).x
    dist = [np.linalg.norm(x[1:] - x[:-1], axis=1) for x in (own, high)]
    np.testing.assert_allclose(dist[1], dist[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_points_span_the_family_subspace_of_the_ambient_space(name: str) -> None:
    """Rotated into R^12, the points still span exactly the family's own m dimensions."""
    x = load(_spec(name, 2, 12, standardize=False)).x.astype(np.float64)
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    assert int((s > 1e-4 * s[0]).sum()) == OWN[name](2)


def test_the_embedding_keeps_distances() -> None:
    data = load(_spec("sphere", 3, 20, standardize=False))
    x, y = data.x.astype(np.float64), data.factors["y"]
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(
        np.linalg.norm(x[1:] - x[:-1], axis=1), np.linalg.norm(y[1:] - y[:-1], axis=1), atol=1e-5
    )


@pytest.mark.parametrize("name", FAMILIES)
def test_deterministic_per_seed(name: str) -> None:
    first, again = load(_spec(name, 2, 9, seed=3)), load(_spec(name, 2, 9, seed=3))
    np.testing.assert_array_equal(first.x, again.x)
    assert not np.allclose(first.x, load(_spec(name, 2, 9, seed=4)).x)


@pytest.mark.parametrize(
    ("name", "d", "ambient"),
    [(name, d, ambient) for name in FAMILIES for d, ambient in ((1, 6), (2, 9))]
    + [("sphere", 3, 12), ("warped_subspace", 3, 12), ("hypercube", 4, 4)],
)
def test_small_neighbourhoods_are_d_dimensional(name: str, d: int, ambient: int) -> None:
    """Local PCA: near any point, the data spread in d directions and (almost) no others."""
    x = load(_spec(name, d, ambient, n=3000)).x.astype(np.float64)
    for centre in range(0, 3000, 300):
        s = _local_spectrum(x, centre, k=8 * d + 4)
        assert s[d - 1] > 0.1 * s[0], (centre, s[: d + 1] / s[0])  # d directions used
        if d < ambient:
            assert s[d] < 0.1 * s[d - 1], (centre, s[: d + 1] / s[0])  # and no more


@pytest.mark.parametrize("name", FAMILIES)
def test_too_few_ambient_dimensions_are_refused(name: str) -> None:
    own = OWN[name](3)
    with pytest.raises(ValueError, match=rf"data\.ambient_dim: .*at least {own} .*got {own - 1}"):
        load(_spec(name, 3, own - 1))


@pytest.mark.parametrize("name", FAMILIES)
def test_a_zero_intrinsic_dimension_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"data\.latent_dim: .* must be >= 1, got 0"):
        load(_spec(name, 0))


def test_a_loader_version_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="'nope': version must be >= 1, got 0"):
        register("nope", version=0)
