"""Plain, frozen configuration of one fit: data, model, prior, training and readout.

Every field is a primitive (or a tuple of primitives), so a ``FitSpec`` can be hashed,
compared, written to JSON and sent between processes. The defaults are the project's one
default configuration for vector data (see the README for how they were chosen); image data
take ``model.kind = 'conv'``.

Each field's type carries its constraints: a bound as ``annotated_types`` metadata
(``Annotated[float, Gt(0.0)]``) and a closed set of values as a ``Literal``. They are the one
schema: ``check_fields`` checks them here (``mflow.fit.check_train``), and the survey
pipeline's job files are validated against the same types (``pipelines.job.schema``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MinLen

__all__ = [
    "DataSpec",
    "FitSpec",
    "ModelSpec",
    "PriorSpec",
    "ReadoutSpec",
    "TrainSpec",
    "canonical_json",
    "check_fields",
    "check_model",
    "check_spec",
    "choices",
]


# Upper bounds of the sizes: far above any fit this project runs, low enough that an absurd
# value (a typo, an extra zero) is refused by name before anything is allocated. Whether a
# fit's data and model fit in memory is checked from the spec (pipelines.job.footprint).
MAX_POINTS = 10**10  # points of a dataset, points per batch
MAX_DIM = 2**20  # a dimension: latent, ambient, lr_prior_dim
MAX_STEPS = 10**9  # optimiser steps, and intervals and windows counted in steps
MAX_LAYERS = 1024  # couplings
MAX_WIDTH = 2**16  # hidden units or channels of a conditioner
MAX_DEPTH = 256  # layers of a conditioner
MAX_LEVELS = 16  # squeezes of a conv flow (each halves the image side)
MAX_LABEL = 2**31 - 1  # a class label
Seed = Annotated[int, Ge(0), Le(2**63 - 1)]  # numpy's and torch's seeds, an int64 column


@dataclass(frozen=True)
class DataSpec:
    """Which points a fit sees. See ``mflow.datasets`` for the names and their options."""

    dataset: str = "sine"  # registry name: sine, line, scurve, fading_square, mnist, ...
    # Number of points (per class for class-structured data); None: the dataset's default,
    # 2000 for generated data and MNIST, every row of a user's file or folder (array, images;
    # mflow.datasets.registry.with_default_n). Whether they fit in memory is checked from the
    # spec before any is made (pipelines.job.footprint)
    n: Annotated[int, Ge(1), Le(MAX_POINTS)] | None = None
    seed: Seed = 0  # seed of the sampling or of the subset drawn
    # Class labels kept (mnist: digits; images: class sub-folders, see mflow.datasets.folder);
    # None keeps all
    classes: tuple[Annotated[int, Ge(0), Le(MAX_LABEL)], ...] | None = None
    split: Literal["test", "train"] = "train"  # train or test (mnist)
    root: str | None = None  # folder with data files (mnist); None: $MFLOW_DATA_DIR or cache
    path: str | None = None  # a user's array file (array) or image folder (images)
    key: str | None = None  # array name inside an .npz file (array)
    # Columns of a table file (array: .csv with a header line, .parquet), in this order; None:
    # every column (each must be numeric)
    columns: tuple[Annotated[str, MinLen(1)], ...] | None = None
    latent_dim: Annotated[int, Ge(1), Le(MAX_DIM)] = 5  # true dimension of synthetic_mnist
    # Ambient dimension D of the constructed manifolds (sphere, torus, swiss_roll, helix,
    # warped_subspace, hypercube, affine; their intrinsic dimension is latent_dim), embedded in
    # R^D by a random rotation; None: the family's smallest (e.g. latent_dim + 1 for the sphere)
    ambient_dim: Annotated[int, Ge(1), Le(MAX_DIM)] | None = None
    standardize: bool = True  # array, constructed manifolds: centre, divide by the principal std
    dequantize: bool = False  # add U(0, 1/256) to pixel values (mnist)
    scale: bool = True  # pixel values to [0, 1] (mnist); False keeps grey levels 0..255
    # Training steps of the VAE behind synthetic_mnist (cached on disk)
    vae_steps: Annotated[int, Ge(1), Le(MAX_STEPS)] = 20000
    # Std of isotropic Gaussian noise added to every point after loading (and standardising),
    # drawn from the seed: data of known dimension made full-dimensional below this scale
    # (issue 15). None (the default) adds none and keeps the fit ids of before.
    noise: Annotated[float, Ge(0.0)] | None = None


@dataclass(frozen=True)
class ModelSpec:
    """The flow ``g``. ``kind='mlp'`` for vectors, ``'conv'`` for images (C, H, W)."""

    # Mlp (fully connected couplings) or conv (squeeze + conv couplings)
    kind: Literal["conv", "mlp"] = "mlp"
    volume_preserving: bool = True  # GIN couplings (True) or RealNVP couplings (baseline)
    # Fully connected couplings (mlp), or after the conv part (conv). 0 only for a conv flow
    # with conv_levels >= 1 (purely convolutional); a flow needs one coupling (check_model).
    couplings: Annotated[int, Ge(0), Le(MAX_LAYERS)] = 8
    hidden: Annotated[int, Ge(1), Le(MAX_WIDTH)] = 24  # hidden units of the MLP conditioners
    # Linear layers per MLP conditioner (paper: 4); 1 is a single linear map, no hidden layer
    depth: Annotated[int, Ge(1), Le(MAX_DEPTH)] = 4
    clamp: Annotated[float, Gt(0.0)] = 2.0  # soft clamp of the log-scale
    # Squeeze levels of a conv flow, each (C,H,W) -> (4C,H/2,W/2); 0: flatten at once
    conv_levels: Annotated[int, Ge(0), Le(MAX_LEVELS)] = 2
    conv_couplings: Annotated[int, Ge(1), Le(MAX_LAYERS)] = 4  # conv couplings per level
    # Channels of the conv conditioners (paper: 16)
    conv_hidden: Annotated[int, Ge(1), Le(MAX_WIDTH)] = 16
    conv_depth: Annotated[int, Ge(1), Le(MAX_DEPTH)] = 3  # conv layers per conditioner (paper: 3)


@dataclass(frozen=True)
class PriorSpec:
    """The latent prior: learnable degenerate ``N(0, A A^T)`` or fixed ``N(0, I)``."""

    # Manifold (learnable A) or standard (fixed N(0, I), baseline)
    kind: Literal["manifold", "standard"] = "manifold"
    # Variance of the spread noise eps added to g(x). The paper uses 1e-4; here it is kept well
    # below the data-noise floor squared (1e-4), because where sigma2 is comparable to it the
    # loss rewards squeezing the manifold's length into its thickness (README, "Defaults").
    sigma2: Annotated[float, Gt(0.0)] = 1e-6
    # Weight of the batch negative-entropy term (paper B.4); 0 = off
    entropy_weight: Annotated[float, Ge(0.0)] = 0.0


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation of one fit."""

    steps: Annotated[int, Ge(0), Le(MAX_STEPS)] = 4000  # optimiser steps
    # Identity (A = I, the paper) or data (A A^T = data covariance)
    prior_init: Literal["data", "identity"] = "data"
    # Points per step, drawn with replacement (at most the data's points: check_data)
    batch_size: Annotated[int, Ge(1), Le(MAX_POINTS)] = 256
    lr: Annotated[float, Gt(0.0)] = 1e-3  # Adam learning rate of the flow
    # Adam learning rate of A: faster, so the prior tracks the flow
    lr_prior: Annotated[float, Gt(0.0)] = 1e-2
    # ... at latent dimensions D up to this; above it, lr_prior * sqrt(lr_prior_dim / D). Adam
    # moves each of A's D(D+1)/2 entries by about its learning rate, even where the gradient is
    # only noise, so a row of A (an eigenvalue's worth of A A^T) drifts by about D lr^2: at a
    # fixed rate a 400-D or 784-D prior never settles below the readout floor (README,
    # "Results"). None: lr_prior at every D (the behaviour before this field existed).
    lr_prior_dim: Annotated[int, Ge(1), Le(MAX_DIM)] | None = 3
    lr_decay: Annotated[float, Gt(0.0), Le(1.0)] = 0.9  # multiply the learning rate by this ...
    lr_decay_every: Annotated[int, Ge(1), Le(MAX_STEPS)] = 400  # ... every this many steps
    # L2 penalty (Adam's weight_decay) on the flow's parameters
    weight_decay: Annotated[float, Ge(0.0)] = 0.0
    weight_decay_prior: Annotated[float, Ge(0.0)] = 0.0  # L2 penalty on A, separately
    # Std of the Gaussian data noise sigma_x at step 0 (coarse to fine); > 0, as the initial
    # prior A A^T = cov(g(x)) + noise_start^2 I may otherwise be singular.
    noise_start: Annotated[float, Gt(0.0)] = 0.5
    noise_floor: Annotated[float, Gt(0.0)] = 0.01  # sigma_x never goes below this
    noise_decay: Annotated[float, Gt(0.0), Le(1.0)] = 0.85  # multiply sigma_x by this ...
    noise_decay_every: Annotated[int, Ge(1), Le(MAX_STEPS)] = 100  # ... every this many steps
    grad_clip: Annotated[float, Gt(0.0)] | None = 10.0  # max gradient norm; None disables clipping
    seed: Seed = 0  # seed of initialisation, batch order and noise
    # Record loss, spectrum and estimate every this many steps
    log_every: Annotated[int, Ge(1), Le(MAX_STEPS)] = 100
    # Early stop (see mflow.settle): end the fit at the first logged point where it has settled
    # over its last this-many + 1 logged points; 0 = off (the default).
    early_stop_window: Annotated[int, Ge(0), Le(MAX_STEPS)] = 0
    # Flat loss: max - min over the window <= tol * max(1, |loss|)
    early_stop_tol: Annotated[float, Ge(0.0)] = 0.05
    # How A A^T follows the flow (None: 'adam'). 'adam': A is a parameter trained by Adam at
    # lr_prior. 'moment': A A^T is set every prior_every steps to the objective's maximiser for
    # the flow as it stands, the second moment E[g(x) g(x)^T] of the codes (the spread noise
    # cancels out), estimated by an exponential moving average over the training batches with
    # decay prior_ema per step (README, "Settling").
    prior_update: Literal["adam", "moment"] | None = None
    prior_every: Annotated[int, Ge(1), Le(MAX_STEPS)] | None = None  # None: 5
    prior_ema: Annotated[float, Ge(0.0), Lt(1.0)] | None = None  # None: 0.98
    device: str = "auto"  # auto (cuda if available), cpu, cuda, cuda:N
    dtype: Literal["float32", "float64"] = "float32"


@dataclass(frozen=True)
class ReadoutSpec:
    """How the spectrum of ``A A^T`` becomes a dimension. See ``mflow.readout``."""

    rule: Literal["gap", "threshold"] = "threshold"
    # The threshold rule counts the eigenvalues above threshold * floor, where
    # floor = prior.sigma2 + train.noise_floor**2 (see mflow.readout).
    threshold: Annotated[float, Gt(0.0)] = 20.0
    # When a fit counts as settled (mflow.settle); None: the defaults there (5, 1.25, 2.0).
    # Logged points judged (the last this-many + 1)
    settle_window: Annotated[int, Ge(1), Le(MAX_STEPS)] | None = None
    # Max factor the eigenvalues either side of the cut move
    settle_drift: Annotated[float, Ge(1.0)] | None = None
    # Min factor between those eigenvalues and the cut
    settle_margin: Annotated[float, Gt(0.0)] | None = None


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
            # JSON has lists where the fields hold tuples (data.classes, data.columns)
            sub = {k: tuple(v) if isinstance(v, list) else v for k, v in sub.items()}
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


# -- the constraints declared on the fields -----------------------------------------------

_BOUNDS = ((Gt, "gt", ">", operator.gt), (Ge, "ge", ">=", operator.ge),
           (Lt, "lt", "<", operator.lt), (Le, "le", "<=", operator.le))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def canonical_json(spec: FitSpec | str) -> str:
    """A spec (or its ``to_json``) as sorted JSON without the fields left at ``None``.

    One string for one fit across versions of this schema that add an optional field
    (``None`` by default): a checkpoint written before the field existed still names the
    same fit (``PackTrainer.load_state_dict``), and the fit id hashes this form.

    Example:
        >>> old = '{"data": {"dataset": "sine", "root": null}, "train": {"steps": 5}}'
        >>> canonical_json(old)
        '{"data": {"dataset": "sine"}, "train": {"steps": 5}}'
        >>> canonical_json(FitSpec()) == canonical_json(FitSpec().to_json())
        True
    """
    text = spec.to_json() if isinstance(spec, FitSpec) else spec
    return json.dumps(_drop_none(json.loads(text)), sort_keys=True)


def _without_none(tp: Any) -> Any:
    """``X`` for ``X | None``; ``tp`` otherwise."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
    return tp


def choices(cls: type, name: str) -> tuple[Any, ...]:
    """The values a ``Literal`` field of the config dataclass ``cls`` takes.

    Example:
        >>> choices(ModelSpec, "kind")
        ('conv', 'mlp')
    """
    tp = _without_none(typing.get_type_hints(cls)[name])
    if typing.get_origin(tp) is not Literal:
        raise TypeError(f"{cls.__name__}.{name} is not a field with a closed set of values")
    return typing.get_args(tp)


def _limit(value: Any) -> str:
    """A bound as the messages write it: ``0`` for ``0.0``, ``1e-06``, ``1024``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _problem(tp: Any, value: Any) -> str | None:
    """What is wrong with ``value`` for a field of type ``tp`` (finite numbers, bounds and
    choices, each item of a tuple), or None."""
    tp = _without_none(tp)
    if value is None:  # an optional field left unset
        return None
    base = tp.__origin__ if typing.get_origin(tp) is Annotated else tp
    if typing.get_origin(base) is tuple and isinstance(value, tuple):
        (item,) = [a for a in typing.get_args(base) if a is not Ellipsis]
        for i, v in enumerate(value):
            problem = _problem(item, v)
            if problem is not None:
                return f"[{i}]: {problem}"
        return None
    if base is float and isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if base is str and typing.get_origin(tp) is Annotated:
        short = [b.min_length for b in tp.__metadata__ if isinstance(b, MinLen)]
        if short and isinstance(value, str) and len(value) < short[0]:
            return f"must not be empty, got {value!r}"
        return None
    if typing.get_origin(tp) is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            return f"expected one of {', '.join(map(str, allowed))}, got {value!r}"
    elif typing.get_origin(tp) is Annotated:
        for bound in tp.__metadata__:
            for kind, attr, sign, holds in _BOUNDS:
                if isinstance(bound, kind):
                    limit = getattr(bound, attr)
                    try:
                        ok = holds(value, limit)
                    except TypeError:
                        return f"expected a number, got {value!r}"
                    if not ok:  # NaN fails every bound
                        return f"must be {sign} {_limit(limit)}, got {value!r}"
    return None


def check_fields(section: Any, where: str) -> None:
    """Refuse a value outside the bounds or choices declared on its field (``ValueError``
    naming ``where.field``); ``section`` is one of the config dataclasses above.

    Example:
        >>> check_fields(TrainSpec(lr=0.0), "train")
        Traceback (most recent call last):
            ...
        ValueError: train.lr: must be > 0, got 0.0
    """
    hints = typing.get_type_hints(type(section), include_extras=True)
    for f in dataclasses.fields(section):
        problem = _problem(hints[f.name], getattr(section, f.name))
        if problem is not None:
            sep = "" if problem.startswith("[") else ": "
            raise ValueError(f"{where}.{f.name}{sep}{problem}")


def check_model(model: ModelSpec, where: str = "model") -> None:
    """``check_fields`` of a ``ModelSpec``, and what its fields need together: a flow has at
    least one coupling (with none it is the identity, and reads the data's full dimension).

    Example:
        >>> check_model(ModelSpec(couplings=0))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: model.couplings: must be >= 1 for model.kind 'mlp' ... got 0
        >>> check_model(ModelSpec(kind="conv", couplings=0))  # purely convolutional
    """
    check_fields(model, where)
    if model.couplings < 1 and (model.kind == "mlp" or model.conv_levels < 1):
        needs = "" if model.kind == "mlp" else f" and {where}.conv_levels {model.conv_levels}"
        raise ValueError(
            f"{where}.couplings: must be >= 1 for {where}.kind {model.kind!r}{needs} (a flow "
            f"without couplings is the identity), got {model.couplings}"
        )


def check_spec(spec: FitSpec) -> None:
    """Every section of ``spec`` checked (``check_fields``, ``check_model``); ``ValueError``
    naming the first bad field by its dotted key."""
    for f in dataclasses.fields(spec):
        section = getattr(spec, f.name)
        if f.name == "model":
            check_model(section, f.name)
        else:
            check_fields(section, f.name)
