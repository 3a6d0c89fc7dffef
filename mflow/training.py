"""The pieces a fit trains with: its device, the data-noise schedule, the checks of its
training settings, how the prior follows the flow, the model built from the data, and Adam
with the flow's and the prior's learning rates."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mflow.config import FitSpec, TrainSpec, check_fields, choices
from mflow.model import ManifoldFlow

__all__ = ["DTYPES", "PRIOR_EMA", "PRIOR_EVERY", "PRIOR_UPDATES", "build_model", "check_train",
           "make_optimizer", "noise_std", "prior_lr", "prior_update", "prior_update_settings",
           "resolve_device"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PRIOR_UPDATES = choices(TrainSpec, "prior_update")  # train.prior_update
PRIOR_EVERY = 5  # train.prior_every when None
PRIOR_EMA = 0.98  # train.prior_ema when None

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
    # fused: one kernel for all the tensors. A 2-D fit's step on one CPU core: 57 steps/s with
    # foreach, 86 fused, beside a bare PyTorch loop's 75-82 (benchmarks/bench_library.py). A
    # checkpoint of a fit trained with foreach keeps foreach (its saved groups say so).
    optimizer = torch.optim.Adam([g for g in groups if g["params"]], lr=train.lr, fused=True)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=train.lr_decay_every, gamma=train.lr_decay
    )
    return optimizer, scheduler

