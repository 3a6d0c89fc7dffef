"""Synthetic MNIST of known dimension d: ``x = decoder(z)``, ``z ~ N(0, I_d)``, from a VAE."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mflow.config import DataSpec
from mflow.datasets import mnist as _mnist
from mflow.datasets.registry import Dataset, register
from mflow.files import atomic_write, exclusive_lock

__all__ = [
    "VAE",
    "VAE_BATCH",
    "VAE_HIDDEN",
    "VAE_LR",
    "VAE_SEED",
    "Decoder",
    "cache_dir",
    "load_decoder",
    "synthetic_mnist",
    "train_vae",
    "vae_key",
]

VAE_HIDDEN = 512  # hidden units of each of the encoder's and decoder's 3 linear layers
VAE_LR = 1e-4  # Adam learning rate (paper)
VAE_BATCH = 100  # images per step (paper)
VAE_SEED = 0  # seed of the VAE's initialisation and batches: one VAE serves every fit's seed
_CACHE_VERSION = 1  # bump when the construction changes, so old caches are not reused


def _linear(a: int, b: int, generator: torch.Generator | None) -> nn.Linear:
    """``nn.Linear`` with torch's default init, ``U(-1/sqrt(a), 1/sqrt(a))``, from ``generator``."""
    layer = nn.utils.skip_init(nn.Linear, a, b)
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(-(a**-0.5), a**-0.5, generator=generator)
    return layer


def _mlp(sizes: list[int], generator: torch.Generator | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers += [_linear(a, b, generator)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


class Decoder(nn.Module):
    """``z (.., d) -> sigmoid(MLP(z))`` as images ``(.., 1, H, W)``; 3 linear layers, ReLU."""

    def __init__(
        self,
        latent_dim: int,
        image_shape: tuple[int, int] = (28, 28),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        pixels = image_shape[0] * image_shape[1]
        self.net = _mlp([latent_dim, VAE_HIDDEN, VAE_HIDDEN, pixels], generator)
        self.register_buffer("image_shape", torch.tensor(image_shape))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid outputs, flat: ``(.., H * W)``."""
        return self.net(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h, w = (int(s) for s in self.image_shape)
        return torch.sigmoid(self.logits(z)).reshape(*z.shape[:-1], 1, h, w)


class VAE(nn.Module):
    """Gaussian encoder, Bernoulli decoder (Kingma and Welling, 2014), both 3-layer MLPs.

    Example:
        >>> vae = VAE(2, (4, 4))
        >>> vae.decoder(torch.zeros(3, 2)).shape
        torch.Size([3, 1, 4, 4])
    """

    def __init__(
        self,
        latent_dim: int,
        image_shape: tuple[int, int] = (28, 28),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        pixels = image_shape[0] * image_shape[1]
        self.encoder = _mlp([pixels, VAE_HIDDEN, VAE_HIDDEN, 2 * latent_dim], generator)
        self.decoder = Decoder(latent_dim, image_shape, generator)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative ELBO per image, averaged: binary cross-entropy plus ``KL(q(z|x) || N(0, I))``.

        ``x`` is flat, ``(batch, H * W)``, with values in ``[0, 1]``; ``generator`` draws the
        reparametrisation noise (on ``x``'s device).
        """
        mu, log_var = self.encoder(x).chunk(2, dim=-1)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * log_var) * eps
        rec = F.binary_cross_entropy_with_logits(self.decoder.logits(z), x, reduction="none")
        kl = 0.5 * (mu.square() + log_var.exp() - 1.0 - log_var)
        return (rec.sum(-1) + kl.sum(-1)).mean()


def train_vae(images: np.ndarray, latent_dim: int, steps: int, seed: int = VAE_SEED) -> Decoder:
    """Train a ``VAE`` on ``images`` ``(N, H, W)`` in ``[0, 1]``; return its decoder (on CPU).

    Adam (``VAE_LR``), batches of ``VAE_BATCH`` drawn with replacement. All randomness comes
    from generators seeded by ``seed`` (the global torch random state is neither used nor
    changed), so runs with the same arguments on one device agree, even run side by side.
    """
    if steps < 1:
        raise ValueError(f"data.vae_steps: must be >= 1, got {steps}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n, h, w = images.shape
    x = torch.as_tensor(images.reshape(n, h * w), dtype=torch.float32, device=device)
    vae = VAE(latent_dim, (h, w), torch.Generator().manual_seed(seed)).to(device)
    g = torch.Generator(device).manual_seed(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=VAE_LR)
    for _ in range(steps):
        batch = x[torch.randint(n, (min(VAE_BATCH, n),), generator=g, device=device)]
        opt.zero_grad(set_to_none=True)
        vae.loss(batch, g).backward()
        opt.step()
    return vae.decoder.cpu().eval()


def load_decoder(path: str | os.PathLike) -> Decoder:
    """A ``Decoder`` from a ``state_dict`` saved by ``torch.save`` (read with weights only)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    h, w = (int(s) for s in state["image_shape"])
    decoder = Decoder(int(state["net.0.weight"].shape[1]), (h, w))
    decoder.load_state_dict(state)
    return decoder.eval()


def cache_dir(spec: DataSpec) -> Path:
    """The cache folder: ``$MFLOW_CACHE_DIR/synthetic_mnist``, else ``<mnist root>/synthetic``."""
    env = os.environ.get("MFLOW_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "synthetic_mnist"
    return _mnist.mnist_root(spec.root) / "synthetic"


def vae_key(spec: DataSpec) -> str:
    """Hex digest of everything the decoder depends on, MNIST checksums included.

    Fits that differ only in ``n``, ``seed`` or fields the VAE does not see share the key.

    Example:
        >>> vae_key(DataSpec(seed=1)) == vae_key(DataSpec(seed=2, n=7))
        True
    """
    if spec.split not in _mnist.FILES:
        raise ValueError(f"data.split: must be one of {sorted(_mnist.FILES)}, got {spec.split!r}")
    params = {
        "version": _CACHE_VERSION,
        "latent_dim": spec.latent_dim,
        "steps": spec.vae_steps,
        "hidden": VAE_HIDDEN,
        "lr": VAE_LR,
        "batch": VAE_BATCH,
        "seed": VAE_SEED,
        "split": spec.split,
        "classes": None if spec.classes is None else sorted(int(c) for c in spec.classes),
        "mnist": [_mnist.CHECKSUMS[name] for name in _mnist.FILES[spec.split]],
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:20]


def _decoder(spec: DataSpec, path: Path) -> Decoder:
    """The cached decoder at ``path``, or a newly trained one, saved there atomically.

    One caller trains it, under a lock file beside it; the others (the trials of a survey
    starting together on a cold cache) wait for the lock, then read what it saved.
    """
    if path.is_file():
        return load_decoder(path)
    held = contextlib.ExitStack()
    try:
        held.enter_context(exclusive_lock(path.with_name(f".{path.name}.lock")))
    except OSError as e:
        raise OSError(
            f"synthetic_mnist: cannot lock the cache file {path} ({e}); "
            f"set $MFLOW_CACHE_DIR to a writable folder"
        ) from e
    with held:
        if path.is_file():  # built by the caller this one waited for
            return load_decoder(path)
        images, labels = _mnist.read_mnist(spec.root, spec.split)
        keep = _mnist.subset_indices(labels, spec.classes, len(labels), seed=0)
        decoder = train_vae(_mnist.pixels_to_float(images[keep]), spec.latent_dim,
                            spec.vae_steps)
        _write(path, lambda f: torch.save(decoder.state_dict(), f))
        return decoder


def _write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    try:
        atomic_write(path, write)
    except OSError as e:
        raise OSError(
            f"synthetic_mnist: cannot write the cache file {path} ({e}); "
            f"set $MFLOW_CACHE_DIR to a writable folder"
        ) from e


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _write(path, lambda f: f.write(buffer.getvalue()))


@register("synthetic_mnist", shape=(1, 28, 28))
def synthetic_mnist(spec: DataSpec) -> Dataset:
    """The paper's synthetic MNIST: ``n`` images ``decoder(z)``, ``z ~ N(0, I_d)``, true dim d.

    ``d = spec.latent_dim``. The decoder is that of a VAE trained for ``spec.vae_steps`` on
    the MNIST ``spec.split`` (digits ``spec.classes``, None: all) with a fixed seed, so the
    fits of a survey share one VAE; ``spec.seed`` draws ``z``. Decoder and data are cached
    in ``cache_dir(spec)``, named by ``vae_key(spec)`` (and ``n``, ``seed`` for the data);
    files are written under a temporary name and renamed, so concurrent builders never leave
    a broken cache, and one caller trains a missing decoder while the others wait for it.
    Images ``(n, 1, 28, 28)`` in ``(0, 1)``; ``factors['z']`` holds the codes. ``scale`` and
    ``dequantize`` do not apply.
    """
    if spec.latent_dim < 1:
        raise ValueError(f"data.latent_dim: must be >= 1, got {spec.latent_dim}")
    key = vae_key(spec)
    folder = cache_dir(spec)
    data_path = folder / f"data-{key}-n{spec.n}-seed{spec.seed}.npz"
    if data_path.is_file():
        with np.load(data_path, allow_pickle=False) as cached:
            x, z = cached["x"], cached["z"]
    else:
        decoder = _decoder(spec, folder / f"decoder-{key}.pt")
        z = np.random.default_rng(spec.seed).standard_normal((spec.n, spec.latent_dim))
        with torch.no_grad():
            x = np.concatenate(
                [
                    decoder(torch.as_tensor(c, dtype=torch.float32)).numpy()
                    for c in np.array_split(z, max(1, spec.n // 4096))
                ]
            )
        _save_npz(data_path, x=x, z=z)
    return Dataset("synthetic_mnist", x, true_dim=spec.latent_dim, factors={"z": z})
