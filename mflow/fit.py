"""One fit: train a ``ManifoldFlow`` from a ``FitSpec`` and return plain data.

``fit(spec) -> FitResult`` is the whole contract the pipeline relies on. ``Trainer`` holds
the state of a fit in progress; ``Trainer.state_dict`` captures all of it (model, optimiser,
learning-rate schedule, random generator, step, curve), so a fit restored from a checkpoint
continues exactly as an uninterrupted one would on the same device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mflow.checkpoint import load_checkpoint, save_checkpoint
from mflow.config import FitSpec, TrainSpec, check_fields, choices
from mflow.datasets import Dataset
from mflow.local import LOCAL_RULE, LocalDimension, headline_dimension, local_dimension
from mflow.model import ManifoldFlow
from mflow.readout import estimate_dimension, readout_cut, readout_floor
from mflow.settle import Settling, settling

__all__ = [
    "DTYPES",
    "CurvePoint",
    "FitResult",
    "Trainer",
    "build_model",
    "check_train",
    "early_stop_due",
    "fit",
    "fit_settling",
    "fit_artifacts",
    "local_codes",
    "local_estimate",
    "make_optimizer",
    "make_result",
    "noise_std",
    "prior_lr",
    "prior_update",
    "prior_update_settings",
    "read_dimension",
    "readout_cut",
    "resolve_device",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PRIOR_UPDATES = choices(TrainSpec, "prior_update")  # train.prior_update
PRIOR_EVERY = 5  # train.prior_every when None
PRIOR_EMA = 0.98  # train.prior_ema when None


@dataclass(frozen=True)
class CurvePoint:
    """What is recorded every ``log_every`` steps."""

    step: int  # steps done
    loss: float  # mean loss over the steps since the previous point
    noise_std: float  # data noise sigma_x in force at the last of those steps
    lr: float  # learning rate in force at the last of those steps
    estimate: int  # dimension read from the spectrum at this step
    eigenvalues: tuple[float, ...]  # spectrum of A A^T, descending
    # local dimension of the codes in the ``estimate`` leading directions (``local_estimate``),
    # read at the noise floor only (None before it, or where there is nothing to read)
    local_dim: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CurvePoint:
        """The point that ``dataclasses.asdict`` (a checkpoint, a result file) or a curves-table
        row made into ``d`` (keys of other columns are ignored). A ``None`` number (how older
        ``mflow.batch`` files wrote NaN) reads as NaN.

        Example:
            >>> p = CurvePoint.from_dict({"step": 10, "loss": None, "noise_std": 0.01,
            ...     "lr": 1e-3, "estimate": 1, "eigenvalues": [1.0, 1e-4], "fit_id": "x"})
            >>> p.loss, p.eigenvalues
            (nan, (1.0, 0.0001))
        """
        return cls(step=int(d["step"]), loss=_number(d["loss"]),
                   noise_std=_number(d["noise_std"]), lr=_number(d["lr"]),
                   estimate=int(d["estimate"]),
                   eigenvalues=tuple(_number(v) for v in d["eigenvalues"]),
                   local_dim=_optional(d.get("local_dim")))


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _optional(value: Any) -> float | None:
    """A stored optional number: None for None or NaN (a null in a Parquet column)."""
    return None if value is None or value != value else float(value)


@dataclass(frozen=True)
class FitResult:
    """The outcome of one fit, as plain data."""

    status: str  # ok, diverged (loss became NaN/inf) or failed (an exception)
    error: str | None  # why, when not ok
    steps: int  # optimiser steps done
    id_estimate: int | None  # the estimate: headline_dimension(id_rank, local_dim), see below
    id_rule: str  # the readout rule that read it
    eigenvalues: tuple[float, ...]  # final spectrum of A A^T, descending
    curve: tuple[CurvePoint, ...]  # one point every log_every steps
    n: int  # number of training points
    ambient_dim: int  # dimension of the data space
    true_dim: int | None  # the data's dimension where known by construction
    wall_s: float  # training time, summed over restarts
    device: str  # where it trained
    diverged_step: int | None = None  # first step whose loss was not finite
    stop_reason: str | None = None  # 'early_stop' when it settled before train.steps, else None
    # Whether the estimate settled (mflow.settle) and the figures that decided it; None for
    # results recorded before the criterion existed.
    settled: bool | None = None
    settle_stable_steps: int | None = None  # steps the estimate has held at the noise floor
    settle_drift: float | None = None  # factor the eigenvalues either side of the cut moved
    settle_margin: float | None = None  # smallest factor between them and the cut
    # The two numbers of issue 16 (None for results recorded before them): id_rank, the rank
    # of A A^T (the flat dimensions the flow needs, K), and the local dimension of the codes
    # g(x) E_K of up to PROJECTED points (mflow.local, rule local_rule) with its spread over
    # points. id_estimate is mflow.local.headline_dimension of the two.
    id_rank: int | None = None
    local_dim: float | None = None
    local_dim_spread: float | None = None
    local_rule: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any],
                  curve: Sequence[Mapping[str, Any]] | None = None) -> FitResult:
        """The inverse of ``to_dict``, also from a fits-table row (keys of other columns are
        ignored; fields added since ``d`` was written take their defaults). ``curve``: the
        points, when they are not in ``d["curve"]`` (curves-table rows, any order)."""
        points = d["curve"] if curve is None else sorted(curve, key=lambda p: p["step"])
        names = {f.name for f in fields(cls)} - {"eigenvalues", "curve"}
        return cls(**{k: v for k, v in d.items() if k in names},
                   eigenvalues=tuple(_number(v) for v in d["eigenvalues"]),
                   curve=tuple(CurvePoint.from_dict(p) for p in points))


def resolve_device(name: str) -> torch.device:
    """``auto`` means CUDA when available, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device: {name!r} asked for, but CUDA is not available")
    return device


def noise_std(train: TrainSpec, step: int) -> float:
    """Data noise ``sigma_x`` at ``step``: ``noise_start * noise_decay**(step // every)``,
    never below ``noise_floor``.

    Example:
        >>> noise_std(TrainSpec(noise_start=0.05, noise_floor=0.01, noise_decay=0.5,
        ...                     noise_decay_every=10), 25)
        0.0125
    """
    decayed = train.noise_start * train.noise_decay ** (step // train.noise_decay_every)
    return max(train.noise_floor, decayed)


def check_train(train: TrainSpec) -> None:
    """Refuse training settings that cannot run, naming the field: the bounds and choices
    declared on ``TrainSpec``'s fields (``mflow.config.check_fields``), the same ones a job
    file is validated against.

    Example:
        >>> check_train(TrainSpec(prior_update="newton"))
        Traceback (most recent call last):
            ...
        ValueError: train.prior_update: expected one of adam, moment, got 'newton'
    """
    check_fields(train, "train")


def fit_settling(spec: FitSpec, curve: Sequence[CurvePoint]) -> Settling:
    """Whether the fit of ``spec`` with this curve has settled (``mflow.settle``)."""
    return settling(curve, spec, readout_cut(spec))


def early_stop_due(curve: Sequence[CurvePoint], spec: FitSpec) -> bool:
    """Whether a fit with early stop on (``train.early_stop_window > 0``) may end now: it
    has settled over its last ``early_stop_window + 1`` logged points (``mflow.settle``).

    Example:
        >>> spec = FitSpec().replace(train={"early_stop_window": 2, "noise_floor": 0.01})
        >>> flat = [CurvePoint(s, -3.0, 0.01, 1e-3, 1, (1.0, 1e-4)) for s in (100, 200, 300)]
        >>> early_stop_due(flat, spec), early_stop_due(flat[:2], spec)
        (True, False)
    """
    return spec.train.early_stop_window > 0 and fit_settling(spec, curve).settled


def prior_update(train: TrainSpec) -> str:
    """How ``A A^T`` follows the flow: ``adam`` (the default) or ``moment``."""
    return train.prior_update or "adam"


def prior_update_settings(train: TrainSpec) -> tuple[int, float]:
    """The closed-form prior's refresh interval (steps) and moving-average decay per step.

    Example:
        >>> prior_update_settings(TrainSpec())
        (5, 0.98)
    """
    every = PRIOR_EVERY if train.prior_every is None else train.prior_every
    decay = PRIOR_EMA if train.prior_ema is None else train.prior_ema
    return every, decay


@torch.no_grad()
def build_model(
    spec: FitSpec, x: Tensor, sample_shape: tuple[int, ...]
) -> ManifoldFlow:
    """The model of ``spec`` on ``x``'s device and dtype, initialised from the data ``x``.

    The data are centred by the model's fixed offset. With ``prior_init='data'``, ``A A^T``
    starts at the covariance of ``g(x)`` (plus the initial data noise): the prior's
    maximum-likelihood value for the flow's starting point. With ``A = I`` the prior first
    asks the flow to stretch the data's thin directions to unit variance and squeeze the long
    ones, which folds the manifold before ``A`` has caught up.
    """
    model = ManifoldFlow.build(spec.model, spec.prior, sample_shape, seed=spec.train.seed)
    model = model.to(x.device, x.dtype)
    model.offset.copy_(x.mean(dim=0))
    if spec.train.prior_init == "data" and hasattr(model.prior, "fit_covariance"):
        z, _ = model.encode(x)
        cov = torch.cov(z.T).reshape(z.shape[1], z.shape[1])
        cov.diagonal().add_(noise_std(spec.train, 0) ** 2)
        model.prior.fit_covariance(cov)
    return model


def prior_lr(train: TrainSpec, dim: int) -> float:
    """The learning rate of ``A`` for a ``dim``-dimensional latent space: ``lr_prior`` up to
    ``lr_prior_dim`` dimensions, then ``lr_prior * sqrt(lr_prior_dim / dim)`` (see TrainSpec).

    Example:
        >>> prior_lr(TrainSpec(), 2), prior_lr(TrainSpec(), 300)
        (0.01, 0.001)
        >>> prior_lr(TrainSpec(lr_prior_dim=None), 300)
        0.01
    """
    if train.lr_prior_dim is None or dim <= train.lr_prior_dim:
        return train.lr_prior
    return train.lr_prior * math.sqrt(train.lr_prior_dim / dim)


def make_optimizer(
    flow_params: list[Tensor], prior_params: list[Tensor], train: TrainSpec, dim: int
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.StepLR]:
    """Adam with the flow's and the prior's own learning rates (``prior_lr`` for a
    ``dim``-dimensional latent space) and weight decays, and the step schedule that multiplies
    both rates by ``lr_decay`` every ``lr_decay_every`` steps."""
    groups = [
        {"params": flow_params, "weight_decay": train.weight_decay},
        {"params": prior_params, "weight_decay": train.weight_decay_prior,
         "lr": prior_lr(train, dim)},
    ]
    optimizer = torch.optim.Adam([g for g in groups if g["params"]], lr=train.lr, foreach=True)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=train.lr_decay_every, gamma=train.lr_decay
    )
    return optimizer, scheduler


def read_dimension(spec: FitSpec, eigenvalues: tuple[float, ...]) -> int:
    """The dimension that ``spec.readout`` reads from a spectrum (-1 if it is not finite)."""
    if not all(math.isfinite(v) for v in eigenvalues):
        return -1
    readout = spec.readout
    params = {"threshold": readout.threshold} if readout.rule == "threshold" else {}
    return estimate_dimension(eigenvalues, readout_floor(spec), readout.rule, **params)


def make_result(
    spec: FitSpec,
    data: Dataset,
    steps: int,
    eigenvalues: tuple[float, ...],
    curve: list[CurvePoint],
    wall_s: float,
    device: torch.device,
    diverged_step: int | None,
    stop_reason: str | None = None,
    local: LocalDimension | None = None,
) -> FitResult:
    """Assemble a ``FitResult``; a diverged fit has no estimate and has not settled.

    ``local`` (``local_estimate``): the local dimension of the codes; with it the estimate is
    ``headline_dimension(rank, local)``, without it the rank of ``A A^T``.
    """
    diverged = diverged_step is not None
    judged = fit_settling(spec, curve)
    rank = None if diverged else read_dimension(spec, eigenvalues)
    estimate = rank
    if rank is not None and local is not None:
        estimate = headline_dimension(rank, local.value)
    return FitResult(
        status="diverged" if diverged else "ok",
        error=f"loss became NaN or inf at step {diverged_step}" if diverged else None,
        steps=steps,
        id_estimate=estimate,
        id_rule=spec.readout.rule,
        eigenvalues=eigenvalues,
        curve=tuple(curve),
        n=data.n,
        ambient_dim=data.ambient_dim,
        true_dim=data.true_dim,
        wall_s=wall_s,
        device=str(device),
        diverged_step=diverged_step,
        stop_reason=stop_reason,
        settled=judged.settled and not diverged,
        settle_stable_steps=judged.stable_steps,
        settle_drift=judged.drift,
        settle_margin=judged.margin,
        id_rank=rank,
        local_dim=None if local is None else local.value,
        local_dim_spread=None if local is None else local.spread,
        local_rule=None if local is None else local.rule,
    )


SAMPLES_IMAGE = 16  # model samples kept per fit of images (a grid in the report)
SAMPLES_VECTOR = 1000  # per fit of vectors (a scatter, and the distance to the true manifold)
PROJECTED = 1000  # training points whose latent projection is kept


@torch.no_grad()
def fit_artifacts(
    model: ManifoldFlow, x: Tensor, estimate: int | None, seed: int
) -> dict[str, np.ndarray]:
    """What a trained model makes of its data, small enough to keep beside the fit's row.

    ``samples``: ``g^{-1}(z)``, ``z ~`` the prior (``SAMPLES_IMAGE`` for images, else
    ``SAMPLES_VECTOR``), in data units. ``projection``: ``g(x) E_k`` of up to ``PROJECTED``
    training points, ``k = min(max(estimate, 1), 3)``; ``index``: which points (rows of ``x``).

    Example:
        >>> spec = FitSpec().replace(train={"steps": 0})
        >>> trainer = Trainer(spec)
        >>> sorted((k, v.shape) for k, v in fit_artifacts(trainer.model, trainer.x, 1, 0).items())
        [('index', (1000,)), ('projection', (1000, 1)), ('samples', (1000, 2))]
    """
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    n_samples = SAMPLES_IMAGE if x.dim() > 2 else SAMPLES_VECTOR
    samples = model.sample(n_samples, gen).float().cpu().numpy()
    index = _projected_index(x.shape[0], seed)
    k = min(max(estimate or 1, 1), 3, model.prior.dim)
    projection = model.project(x[torch.as_tensor(index, device=x.device)], k)
    model.train(was_training)
    return {"samples": samples, "projection": projection.float().cpu().numpy(), "index": index}


def _projected_index(n: int, seed: int) -> np.ndarray:
    """The (up to ``PROJECTED``) training points whose codes are kept and read, sorted."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(n, PROJECTED), replace=False))


@torch.no_grad()
def local_codes(
    model: ManifoldFlow, x: Tensor, rank: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The codes ``g(x) E_K`` (float64) of the same up to ``PROJECTED`` points as
    ``fit_artifacts`` keeps, in the ``K = rank`` leading eigen-directions of ``A A^T``, and
    which points (rows of ``x``) they are."""
    index = _projected_index(x.shape[0], seed)
    was_training = model.training
    model.eval()
    codes = model.project(x[torch.as_tensor(index, device=x.device)], rank)
    model.train(was_training)
    return codes.double().cpu().numpy(), index


def local_estimate(
    model: ManifoldFlow, x: Tensor, rank: int, seed: int, rule: str = LOCAL_RULE
) -> LocalDimension | None:
    """The local dimension (``mflow.local``) of the codes in the ``rank`` leading directions;
    None when there is nothing to read (``rank < 1``, fewer than 3 points, codes that are not
    finite or all coincide)."""
    if rank < 1 or x.shape[0] < 3:
        return None
    codes, _ = local_codes(model, x, min(rank, model.prior.dim), seed)
    if not np.all(np.isfinite(codes)):
        return None
    try:
        return local_dimension(codes, rule)
    except ValueError:  # no distinct neighbours: nothing to read
        return None


class Trainer:
    """A fit in progress: a pack of one (``mflow.pack.PackTrainer``, the one training loop).
    ``run`` trains to ``spec.train.steps`` and returns a ``FitResult``.

    ``state_dict`` captures all of it (model, optimiser, learning-rate schedule, random
    generator, step, curve), so a fit restored from a checkpoint continues exactly as an
    uninterrupted one would on the same device.

    Args:
        spec: the fit.
        data: the points; loaded from ``spec.data`` when not given.
    """

    def __init__(self, spec: FitSpec, data: Dataset | None = None) -> None:
        from mflow.pack import PackTrainer  # the loop builds on this module's pieces

        self.spec = spec
        self.pack = PackTrainer([spec], None if data is None else [data])
        self.data = self.pack.datas[0]
        self.device = self.pack.device

    @property
    def x(self) -> Tensor:
        """The training points on the fit's device and dtype."""
        return self.pack.x[0]

    @property
    def model(self) -> ManifoldFlow:
        """The model as it stands (a copy of the fit's current weights)."""
        return self.pack.member(0)

    @property
    def step(self) -> int:
        return self.pack.step

    @property
    def curve(self) -> list[CurvePoint]:
        return self.pack.curves[0]

    @property
    def wall_s(self) -> float:
        return self.pack.wall_s

    @property
    def diverged_step(self) -> int | None:
        return self.pack.diverged_steps[0]

    @property
    def stop_reason(self) -> str | None:
        return self.pack.stop_reasons[0]

    def _train_step(self) -> None:
        self.pack._train_step()

    def run(self, callback: Callable[[CurvePoint, Trainer], Any] | None = None) -> FitResult:
        """Train until ``spec.train.steps``, divergence or an early stop (``mflow.settle``);
        call ``callback`` at each log (not on the point where the loss was found non-finite).

        A callback that returns ``True`` stops the fit early (after the current point), as if
        it were killed: a later ``run`` continues it. An early stop is final.
        """
        forward = None if callback is None else (lambda _k, point, _p: callback(point, self))
        return self.pack.run(forward)[0]

    def result(self) -> FitResult:
        """The fit's outcome as it stands."""
        return self.pack.results()[0]

    def artifacts(self) -> dict[str, np.ndarray]:
        """``fit_artifacts`` of the model as it stands (read at the current estimate)."""
        return self.pack.artifacts(0)

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: tensors, dicts, lists and numbers only."""
        return self.pack.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``; refuses the state of a different fit spec."""
        self.pack.load_state_dict(state)

    def save(self, path) -> None:
        """Write ``state_dict()`` to ``path`` atomically (``mflow.checkpoint``)."""
        save_checkpoint(self, path)

    def restore(self, path) -> None:
        """Load a checkpoint written by ``save`` (tensors and plain data only)."""
        load_checkpoint(self, path)


def fit(
    spec: FitSpec,
    data: Dataset | None = None,
    callback: Callable[[CurvePoint, Trainer], Any] | None = None,
    state: dict[str, Any] | None = None,
) -> FitResult:
    """Train one model as ``spec`` says and return its result.

    ``state`` (from ``Trainer.state_dict``) continues a fit that was stopped. Divergence
    is a result (status ``diverged``), not an exception.

    Example:
        >>> from mflow.config import DataSpec
        >>> spec = FitSpec(data=DataSpec("line", n=300)).replace(train={"steps": 20})
        >>> fit(spec).status
        'ok'
    """
    trainer = Trainer(spec, data)
    if state is not None:
        trainer.load_state_dict(state)
    return trainer.run(callback)
