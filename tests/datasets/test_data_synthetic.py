"""Synthetic MNIST on a tiny VAE budget: shapes, metadata, determinism, the cache and its writes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from mflow.config import DataSpec
from mflow.datasets import load, mnist, synthetic
from tests.support import torch_threads, wait_for

STEPS = 3  # VAE steps: enough to exercise training, cheap enough for every test run


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The tiny VAE is fastest on one thread (and threads fight on a busy shared machine)."""
    with torch_threads(1):
        yield


@pytest.fixture
def spec(tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataSpec:
    monkeypatch.setenv("MFLOW_CACHE_DIR", str(tmp_path / "cache"))
    return DataSpec(
        "synthetic_mnist", root=str(tiny_root), n=7, seed=1, latent_dim=2, vae_steps=STEPS
    )


def _no_training(*args: object, **kwargs: object) -> None:
    raise AssertionError("the VAE was trained again instead of read from the cache")


def test_shape_dtype_and_true_dim(spec: DataSpec) -> None:
    d = load(spec)
    assert d.x.shape == (7, 1, 28, 28) and d.x.dtype == np.float32
    assert d.true_dim == 2 and d.is_image
    assert d.factors["z"].shape == (7, 2)
    assert d.x.min() > 0 and d.x.max() < 1  # sigmoid outputs


def test_images_are_the_decoder_of_the_codes(spec: DataSpec, tmp_path: Path) -> None:
    d = load(spec)
    (decoder_path,) = (tmp_path / "cache" / "synthetic_mnist").glob("decoder-*.pt")
    decoder = synthetic.load_decoder(decoder_path)
    with torch.no_grad():
        x = decoder(torch.as_tensor(d.factors["z"], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(d.x, x, atol=1e-6)


def test_cache_is_reused(spec: DataSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load(spec)
    folder = tmp_path / "cache" / "synthetic_mnist"
    assert len(list(folder.glob("decoder-*.pt"))) == 1
    assert len(list(folder.glob("data-*.npz"))) == 1
    monkeypatch.setattr(synthetic, "train_vae", _no_training)
    np.testing.assert_array_equal(load(spec).x, first.x)  # the data file
    other = load(DataSpec(**{**spec.__dict__, "n": 9, "seed": 2}))  # the decoder file
    assert other.n == 9 and not np.array_equal(other.x[:7], first.x)
    assert len(list(folder.glob("decoder-*.pt"))) == 1
    assert len(list(folder.glob("data-*.npz"))) == 2
    assert not list(folder.glob(".*"))  # no temporary files left


def test_deterministic_by_seed_and_nested_in_n(spec: DataSpec, tmp_path: Path) -> None:
    a = load(spec)
    b = load(DataSpec(**{**spec.__dict__, "n": 10}))
    np.testing.assert_allclose(b.x[:7], a.x, atol=1e-6)
    # without any cache, the same spec gives the same data again
    for path in (tmp_path / "cache" / "synthetic_mnist").iterdir():
        path.unlink()
    np.testing.assert_array_equal(load(spec).x, a.x)


def test_cache_written_atomically(
    spec: DataSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = torch.save

    def crash_midway(obj: object, f: object) -> None:
        f.write(b"half a decoder")
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(synthetic.torch, "save", crash_midway)
    with pytest.raises(RuntimeError, match="killed"):
        load(spec)
    folder = tmp_path / "cache" / "synthetic_mnist"
    assert list(folder.iterdir()) == []  # neither the broken file nor its temporary name
    monkeypatch.setattr(synthetic.torch, "save", real_save)
    assert load(spec).n == 7


def test_concurrent_builders_leave_a_valid_cache(spec: DataSpec, tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(load, [spec, spec])
    np.testing.assert_array_equal(a.x, b.x)
    folder = tmp_path / "cache" / "synthetic_mnist"
    assert sorted(p.name[:5] for p in folder.iterdir()) == ["data-", "decod"]
    np.testing.assert_array_equal(load(spec).x, a.x)


def test_concurrent_loads_on_a_cold_cache_train_one_vae(
    spec: DataSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trials of a survey start together: one trains the VAE, the others wait for it."""
    real, real_lock, calls, locking = synthetic.train_vae, synthetic.exclusive_lock, [], []

    @contextlib.contextmanager
    def counted_lock(path):
        locking.append(path)  # before the lock is taken: found no decoder, about to wait
        with real_lock(path):
            yield

    def after_the_others_wait(*args: object, **kwargs: object) -> synthetic.Decoder:
        calls.append(args)
        # Trains only once every load found no decoder and waits for this one's lock.
        wait_for(lambda: len(locking) == 3, 60, "the other loads to wait for the lock")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "exclusive_lock", counted_lock)
    monkeypatch.setattr(synthetic, "train_vae", after_the_others_wait)
    specs = [spec, *(DataSpec(**{**spec.__dict__, "seed": s}) for s in (2, 3))]
    with ThreadPoolExecutor(3) as pool:
        loaded = list(pool.map(load, specs))
    assert len(calls) == 1 and [d.n for d in loaded] == [7, 7, 7]
    folder = tmp_path / "cache" / "synthetic_mnist"
    assert len(list(folder.glob("decoder-*.pt"))) == 1
    assert not list(folder.glob(".*"))  # neither temporary files nor the lock file


def test_key_follows_what_the_decoder_depends_on(
    spec: DataSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = synthetic.vae_key(spec)
    assert synthetic.vae_key(DataSpec(**{**spec.__dict__, "n": 3, "seed": 9})) == key
    for change in ({"latent_dim": 3}, {"vae_steps": 4}, {"split": "test"}, {"classes": (1,)}):
        assert synthetic.vae_key(DataSpec(**{**spec.__dict__, **change})) != key
    monkeypatch.setitem(mnist.CHECKSUMS, "train-images-idx3-ubyte", "0" * 64)
    assert synthetic.vae_key(spec) != key


def test_default_cache_folder_is_beside_mnist(
    spec: DataSpec, tiny_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MFLOW_CACHE_DIR")
    assert synthetic.cache_dir(spec) == tiny_root / "synthetic"
    load(spec)
    assert len(list((tiny_root / "synthetic").glob("decoder-*.pt"))) == 1


def test_training_leaves_the_global_random_state_alone() -> None:
    state = torch.random.get_rng_state()
    images = np.random.default_rng(0).uniform(size=(5, 4, 4))
    decoder = synthetic.train_vae(images, latent_dim=1, steps=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert decoder(torch.zeros(3, 1)).shape == (3, 1, 4, 4)
