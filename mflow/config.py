"""Plain, frozen configuration of one fit: data, model, prior, training and readout.

Every field is a primitive (or a tuple of primitives), so a ``FitSpec`` can be hashed,
compared, written to JSON and sent between processes. The defaults are the project's one
default configuration for vector data (see the README for how they were chosen); image data
take ``model.kind = 'conv'``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DataSpec", "FitSpec", "ModelSpec", "PriorSpec", "ReadoutSpec", "TrainSpec"]


@dataclass(frozen=True)
class DataSpec:
    """Which points a fit sees. See ``mflow.datasets`` for the names and their options."""

    dataset: str = "sine"  # registry name: sine, line, scurve, fading_square, mnist, ...
    n: int = 2000  # number of points (per class for class-structured data)
    seed: int = 0  # seed of the sampling or of the subset drawn
    classes: tuple[int, ...] | None = None  # class labels kept (mnist); None keeps all
    split: str = "train"  # train or test (mnist)
    root: str | None = None  # folder with data files (mnist); None: $MFLOW_DATA_DIR or cache
    path: str | None = None  # a user's array file (array)
    key: str | None = None  # array name inside an .npz file (array)
    latent_dim: int = 5  # true dimension of synthetic_mnist
    # Ambient dimension D of the constructed manifolds (sphere, torus, swiss_roll, helix,
    # warped_subspace, hypercube, affine; their intrinsic dimension is latent_dim), embedded in
    # R^D by a random rotation; None: the family's smallest (e.g. latent_dim + 1 for the sphere)
    ambient_dim: int | None = None
    standardize: bool = True  # array, constructed manifolds: centre, divide by the principal std
    dequantize: bool = False  # add U(0, 1/256) to pixel values (mnist)
    scale: bool = True  # pixel values to [0, 1] (mnist); False keeps grey levels 0..255
    vae_steps: int = 20000  # training steps of the VAE behind synthetic_mnist (cached on disk)
    # Std of isotropic Gaussian noise added to every point after loading (and standardising),
    # drawn from the seed: data of known dimension made full-dimensional below this scale
    # (issue 15). None (the default) adds none and keeps the fit ids of before.
    noise: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    """The flow ``g``. ``kind='mlp'`` for vectors, ``'conv'`` for images (C, H, W)."""

    kind: str = "mlp"  # mlp (fully connected couplings) or conv (squeeze + conv couplings)
    volume_preserving: bool = True  # GIN couplings (True) or RealNVP couplings (baseline)
    couplings: int = 8  # fully connected couplings (mlp), or after the conv part (conv)
    hidden: int = 24  # hidden units of the MLP conditioners (paper: 24)
    depth: int = 4  # linear layers per MLP conditioner (paper: 4)
    clamp: float = 2.0  # soft clamp of the log-scale
    conv_levels: int = 2  # squeeze levels of a conv flow, each (C,H,W) -> (4C,H/2,W/2)
    conv_couplings: int = 4  # conv couplings per level
    conv_hidden: int = 16  # channels of the conv conditioners (paper: 16)
    conv_depth: int = 3  # conv layers per conditioner (paper: 3)


@dataclass(frozen=True)
class PriorSpec:
    """The latent prior: learnable degenerate ``N(0, A A^T)`` or fixed ``N(0, I)``."""

    kind: str = "manifold"  # manifold (learnable A) or standard (fixed N(0, I), baseline)
    # Variance of the spread noise eps added to g(x). The paper uses 1e-4; here it is kept well
    # below the data-noise floor squared (1e-4), because where sigma2 is comparable to it the
    # loss rewards squeezing the manifold's length into its thickness (README, "Defaults").
    sigma2: float = 1e-6
    entropy_weight: float = 0.0  # weight of the batch negative-entropy term (paper B.4); 0 = off


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation of one fit."""

    steps: int = 4000  # optimiser steps
    prior_init: str = "data"  # identity (A = I, the paper) or data (A A^T = data covariance)
    batch_size: int = 256  # points per step, drawn with replacement
    lr: float = 1e-3  # Adam learning rate of the flow
    lr_prior: float = 1e-2  # Adam learning rate of A: faster, so the prior tracks the flow
    # ... at latent dimensions D up to this; above it, lr_prior * sqrt(lr_prior_dim / D). Adam
    # moves each of A's D(D+1)/2 entries by about its learning rate, even where the gradient is
    # only noise, so a row of A (an eigenvalue's worth of A A^T) drifts by about D lr^2: at a
    # fixed rate a 400-D or 784-D prior never settles below the readout floor (README,
    # "Results"). None: lr_prior at every D (the behaviour before this field existed).
    lr_prior_dim: int | None = 3
    lr_decay: float = 0.9  # multiply the learning rate by this ...
    lr_decay_every: int = 400  # ... every this many steps
    weight_decay: float = 0.0  # L2 penalty (Adam's weight_decay) on the flow's parameters
    weight_decay_prior: float = 0.0  # L2 penalty on A, separately
    noise_start: float = 0.5  # std of the Gaussian data noise sigma_x at step 0 (coarse to fine)
    noise_floor: float = 0.01  # sigma_x never goes below this
    noise_decay: float = 0.85  # multiply sigma_x by this ...
    noise_decay_every: int = 100  # ... every this many steps
    grad_clip: float | None = 10.0  # max gradient norm; None disables clipping
    seed: int = 0  # seed of initialisation, batch order and noise
    log_every: int = 100  # record loss, spectrum and estimate every this many steps
    # Early stop (see mflow.settle): end the fit at the first logged point where it has settled
    # over its last this-many + 1 logged points; 0 = off (the default).
    early_stop_window: int = 0
    early_stop_tol: float = 0.05  # flat loss: max - min over the window <= tol * max(1, |loss|)
    # How A A^T follows the flow (None: 'adam'). 'adam': A is a parameter trained by Adam at
    # lr_prior. 'moment': A A^T is set every prior_every steps to the objective's maximiser for
    # the flow as it stands, the second moment E[g(x) g(x)^T] of the codes (the spread noise
    # cancels out), estimated by an exponential moving average over the training batches with
    # decay prior_ema per step (README, "Settling").
    prior_update: str | None = None
    prior_every: int | None = None  # None: 5
    prior_ema: float | None = None  # None: 0.98
    device: str = "auto"  # auto (cuda if available), cpu, cuda, cuda:N
    dtype: str = "float32"  # float32 or float64


@dataclass(frozen=True)
class ReadoutSpec:
    """How the spectrum of ``A A^T`` becomes a dimension. See ``mflow.readout``."""

    rule: str = "threshold"  # threshold or gap
    threshold: float = 20.0  # threshold rule: count eigenvalues above threshold * floor,
    # where floor = prior.sigma2 + train.noise_floor**2 (see mflow.readout)
    # When a fit counts as settled (mflow.settle); None: the defaults there (5, 1.5, 2.0).
    settle_window: int | None = None  # logged points judged (the last this-many + 1)
    settle_drift: float | None = None  # max factor the eigenvalues either side of the cut move
    settle_margin: float | None = None  # min factor between those eigenvalues and the cut


@dataclass(frozen=True)
class FitSpec:
    """Everything one fit needs, as plain data."""

    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    prior: PriorSpec = field(default_factory=PriorSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    readout: ReadoutSpec = field(default_factory=ReadoutSpec)

    def to_dict(self) -> dict[str, Any]:
        """Nested dict of primitives (tuples become lists)."""
        return json.loads(self.to_json())

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, so equal specs give equal strings."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitSpec:
        """Inverse of ``to_dict``. Unknown keys raise ``TypeError`` naming them."""
        parts = {}
        for f in dataclasses.fields(cls):
            sub = dict(d.get(f.name, {}))
            sub_cls = f.default_factory
            if "classes" in sub and sub["classes"] is not None:
                sub["classes"] = tuple(sub["classes"])
            parts[f.name] = sub_cls(**sub)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"FitSpec: unknown sections {sorted(unknown)}")
        return cls(**parts)

    def replace(self, **sections: dict[str, Any]) -> FitSpec:
        """A copy with fields of some sections changed: ``spec.replace(train={'steps': 5})``."""
        return dataclasses.replace(
            self,
            **{k: dataclasses.replace(getattr(self, k), **v) for k, v in sections.items()},
        )
