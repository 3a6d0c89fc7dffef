"""The dataset registry and the ``Dataset`` every loader returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mflow.config import DataSpec

__all__ = [
    "DATASETS",
    "DATA_VERSIONS",
    "DEFAULT_POINTS",
    "EVERY_ROW",
    "Dataset",
    "add_noise",
    "load",
    "register",
    "sample_shape",
    "with_default_n",
]

# data.n left out: the points of a generated dataset (or of MNIST, per class when classes are
# given). The fit ids of before this default was written here had it spelled out as 2000.
DEFAULT_POINTS = 2000


@dataclass(frozen=True)
class Dataset:
    """Float data plus what is known about it.

    ``x`` has shape ``(n, *sample_shape)``: ``(n, D)`` for vectors, ``(n, C, H, W)`` for
    images. ``true_dim`` is the intrinsic dimension where it is known by construction.
    ``factors`` holds per-point generating factors where they exist (e.g. the grey value of
    the fading square, the position along a curve), for checking representations.
    ``heldout``: points of the same data that the fit does not train on, scaled as ``x``
    (a user's file's rows beyond ``n``), where the loader has them; per-point readouts read
    there (``mflow.jacobian``).
    """

    name: str
    x: np.ndarray
    true_dim: int | None = None
    labels: np.ndarray | None = None
    factors: dict[str, np.ndarray] = field(default_factory=dict)
    heldout: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    @property
    def ambient_dim(self) -> int:
        return int(np.prod(self.sample_shape))

    @property
    def is_image(self) -> bool:
        return len(self.sample_shape) == 3


Loader = Callable[[DataSpec], Dataset]
DATASETS: dict[str, Loader] = {}
# A loader's version: raised when the same DataSpec comes to give other points (a changed
# construction or scaling), so that fits of the old points are not taken for fits of the new
# ones (the survey pipeline puts a version above 1 into the fit id).
DATA_VERSIONS: dict[str, int] = {}
# The shape of one point, for loaders whose points have one shape whatever the spec says (the
# toys, the image sets): known without loading, so fits of two such datasets can be put in one
# pack by their specs alone (mflow.pack.pack_key).
SAMPLE_SHAPES: dict[str, tuple[int, ...]] = {}
# The loaders of a user's rows (a file, a folder): data.n left out, they use every row.
EVERY_ROW: set[str] = set()


def register(
    name: str, version: int = 1, shape: tuple[int, ...] | None = None, every_row: bool = False
) -> Callable[[Loader], Loader]:
    """Decorator: make ``fn(spec) -> Dataset`` loadable as ``DataSpec(dataset=name)``.

    ``version``: raise it when the loader's output for a given ``DataSpec`` changes.
    ``shape``: the shape of every point it returns, when no field of the spec changes it.
    ``every_row``: the loader reads a user's rows and takes ``spec.n`` None as "all of them";
    other loaders are given ``DEFAULT_POINTS`` for it (``with_default_n``).
    """
    if version < 1:
        raise ValueError(f"dataset {name!r}: version must be >= 1, got {version}")

    def wrap(fn: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = fn
        DATA_VERSIONS[name] = version
        if shape is not None:
            SAMPLE_SHAPES[name] = tuple(shape)
        if every_row:
            EVERY_ROW.add(name)
        return fn

    return wrap


def sample_shape(spec: DataSpec) -> tuple[int, ...] | None:
    """The shape of one of ``spec``'s points where its loader declares it, else None (known
    only by loading).

    Example:
        >>> sample_shape(DataSpec("sine")), sample_shape(DataSpec("array"))
        ((2,), None)
    """
    return SAMPLE_SHAPES.get(spec.dataset)


def with_default_n(spec: DataSpec) -> DataSpec:
    """``spec`` with ``n`` left out (None) set to ``DEFAULT_POINTS``, except for the loaders of
    a user's rows (``EVERY_ROW``), which keep None: every row.

    Example:
        >>> with_default_n(DataSpec("sine")).n, with_default_n(DataSpec("array")).n
        (2000, None)
    """
    if spec.n is not None or spec.dataset in EVERY_ROW:
        return spec
    return dataclasses.replace(spec, n=DEFAULT_POINTS)


def add_noise(x: np.ndarray, spec: DataSpec) -> np.ndarray:
    """``x + s e`` with ``e ~ N(0, I)`` per point and coordinate, ``s = spec.noise``, drawn from
    ``spec.seed`` (a stream no loader uses); ``x`` itself when ``spec.noise`` is None or 0.

    The points then fill every direction up to the scale ``s``: a d-manifold in ``R^D`` reads
    ``D`` dimensions below ``s`` and ``d`` above it (issue 15's known answer).

    Example:
        >>> x = np.zeros((4000, 3))
        >>> noisy = add_noise(x, DataSpec("array", noise=0.1))
        >>> round(float(noisy.std()), 2), add_noise(x, DataSpec("array")) is x
        (0.1, True)
    """
    if spec.noise is None or spec.noise == 0:
        return x
    if not (np.isfinite(spec.noise) and spec.noise > 0):
        raise ValueError(f"data.noise: must be a finite number >= 0, got {spec.noise}")
    rng = np.random.default_rng([spec.seed, 7])
    return x + spec.noise * rng.standard_normal(x.shape)


def load(spec: DataSpec) -> Dataset:
    """Load the dataset ``spec.dataset`` names; an unknown name lists the known ones.

    Example:
        >>> load(DataSpec(dataset="sine", n=10)).x.shape
        (10, 2)
    """
    try:
        loader = DATASETS[spec.dataset]
    except KeyError:
        raise ValueError(
            f"data.dataset: unknown dataset {spec.dataset!r}; known: {', '.join(sorted(DATASETS))}"
        ) from None
    if spec.n is not None and spec.n < 1:
        raise ValueError(f"data.n: must be >= 1, got {spec.n}")
    data = loader(with_default_n(spec))
    heldout = None
    if data.heldout is not None and len(data.heldout):
        heldout = np.ascontiguousarray(add_noise(data.heldout, spec), dtype=np.float32)
    return Dataset(
        name=data.name,
        x=np.ascontiguousarray(add_noise(data.x, spec), dtype=np.float32),
        true_dim=data.true_dim,
        labels=data.labels,
        factors=data.factors,
        heldout=heldout,
    )
