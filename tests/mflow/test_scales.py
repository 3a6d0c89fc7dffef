"""The scale readout (mflow.scales): its maths on spectra of known law, and the known answers
of issue 15 on real fits (a 2-D surface in R^10 with and without isotropic noise)."""

from __future__ import annotations

import numpy as np
import pytest

from mflow.config import DataSpec, FitSpec
from mflow.datasets import load
from mflow.pack import fit_pack
from mflow.scales import MIN_FLOORS, log_volume, scale_dimensions, scale_readout

FLOORS = np.array([0.001, 0.003, 0.01, 0.03, 0.1, 0.3])


def volumes(floors: np.ndarray, d: int, dim: int, noise: float, rng=None) -> np.ndarray:
    """Log-volumes of spectra of a d-manifold in R^dim with noise std ``noise`` of its own:
    d eigenvalues at the data's variance, dim - d at noise**2 + floor**2, each stretched by
    a random factor (what a volume-preserving flow may trade between directions)."""
    out = []
    for sx in floors:
        values = np.array([1.0] * d + [noise**2 + sx**2] * (dim - d))
        if rng is not None:
            values = values * np.exp(rng.normal(0.0, 0.2, dim))
        out.append(log_volume(values, 0.0))
    return np.array(out)


@pytest.mark.parametrize("noise", [0.003, 0.01])
def test_the_readout_finds_the_dimension_and_the_noise_scale_of_the_law(noise: float):
    rng = np.random.default_rng(0)
    out = scale_readout(FLOORS, volumes(FLOORS, 2, 10, noise, rng), 10)
    assert out.dimension == 2
    assert noise / 2 < out.noise_scale < noise * 2
    assert out.low > noise and out.high >= 0.1  # holds above the noise only
    assert out.dimensions[0] > 6  # the finest floors see the noise's directions


def test_noiseless_data_read_the_same_at_every_floor_and_show_no_noise_scale():
    rng = np.random.default_rng(1)
    out = scale_readout(FLOORS, volumes(FLOORS, 3, 12, 0.0, rng), 12)
    assert out.dimension == 3 and out.noise_scale is None
    assert (out.low, out.high) == (pytest.approx(0.001), pytest.approx(0.3))
    assert np.all(np.abs(np.array(out.dimensions) - 3) < 1.5)


def test_noise_above_every_floor_reads_full_dimension():
    out = scale_readout(FLOORS[:4], volumes(FLOORS[:4], 2, 10, 1.0), 10)
    assert out.dimension == 10


def test_finite_differences_are_the_slope_of_the_log_volume():
    sx = np.array([0.1, 0.01, 0.03])  # any order
    r, d = scale_dimensions(sx, 7.0 + 3 * np.log(sx**2), 5)
    assert np.allclose(d, 2.0) and np.allclose(r, [np.sqrt(0.0003), np.sqrt(0.003)])


def test_the_log_volume_ignores_variance_traded_between_directions():
    """A linear map of determinant 1 moves every eigenvalue of a covariance but not their
    product: the readout is read from the product for that reason."""
    rng = np.random.default_rng(2)
    cov = np.diag([1.0, 0.5, 1e-3, 1e-3, 1e-3])
    m = rng.normal(size=(5, 5))
    m /= abs(np.linalg.det(m)) ** (1 / 5)
    before = np.linalg.eigvalsh(cov)
    after = np.linalg.eigvalsh(m @ cov @ m.T)
    assert not np.allclose(np.sort(before), np.sort(after), rtol=0.1)
    assert log_volume(after, 0.0) == pytest.approx(log_volume(before, 0.0), abs=1e-6)


def test_bad_input_is_refused_with_a_message():
    with pytest.raises(ValueError, match=f"{MIN_FLOORS} or more floors"):
        scale_readout(FLOORS[:2], [1.0, 2.0], 4)
    with pytest.raises(ValueError, match="same floor"):
        scale_readout([0.1, 0.1, 0.2], [1.0, 2.0, 3.0], 4)
    with pytest.raises(ValueError, match="floors must be finite"):
        scale_readout([0.1, -0.1, 0.2], [1.0, 2.0, 3.0], 4)
    with pytest.raises(ValueError, match="one length"):
        scale_dimensions([0.1, 0.2], [1.0], 4)
    with pytest.raises(ValueError, match="volume is 0"):
        log_volume([1.0, 0.0], 0.0)


def test_the_noise_option_adds_isotropic_noise_of_the_given_std():
    clean = load(DataSpec("warped_subspace", n=3000, latent_dim=2, ambient_dim=10))
    noisy = load(DataSpec("warped_subspace", n=3000, latent_dim=2, ambient_dim=10, noise=0.05))
    residual = noisy.x - clean.x
    assert residual.std() == pytest.approx(0.05, rel=0.05)
    assert np.allclose(np.cov(residual.T), 0.05**2 * np.eye(10), atol=3e-4)
    with pytest.raises(ValueError, match="data.noise"):
        load(DataSpec("warped_subspace", n=10, latent_dim=2, ambient_dim=10, noise=-1.0))


# -- known answers on real fits (issue 15) ----------------------------------------------------

KNOWN_FLOORS = (0.001, 0.003, 0.01, 0.03, 0.1)
NOISE = 0.01


def _fits(noise: float | None) -> list:
    """A 2-D warped surface in R^10 (1,000 points), one fit per floor, trained as one pack:
    the default vector configuration but for 1,500 steps with sigma_x annealed every 20."""
    data = DataSpec("warped_subspace", n=1000, latent_dim=2, ambient_dim=10, noise=noise)
    specs = [FitSpec(data=data).replace(train={
        "steps": 1500, "noise_floor": floor, "noise_decay_every": 20, "log_every": 100})
        for floor in KNOWN_FLOORS]
    return fit_pack(specs)


@pytest.mark.slow
def test_a_noisy_surface_reads_ambient_below_the_noise_two_above_and_the_noise_scale():
    results = _fits(NOISE)
    ranks = dict(zip(KNOWN_FLOORS, (r.id_rank for r in results), strict=True))
    assert ranks[0.001] >= 9  # well below the noise: every direction is used
    assert ranks[0.1] == 2  # well above it: the surface
    spectra = [r.eigenvalues for r in results]
    out = scale_readout(KNOWN_FLOORS, [log_volume(s, 1e-6) for s in spectra], 10, sigma2=1e-6)
    assert out.dimension == 2
    assert NOISE / 2 < out.noise_scale < NOISE * 2


@pytest.mark.slow
def test_a_noiseless_surface_reads_two_at_every_floor_below_its_curvature():
    results = _fits(None)
    assert [r.id_rank for r in results[1:]] == [2] * (len(KNOWN_FLOORS) - 1)
    spectra = [r.eigenvalues for r in results]
    out = scale_readout(KNOWN_FLOORS, [log_volume(s, 1e-6) for s in spectra], 10, sigma2=1e-6)
    assert out.dimension == 2
