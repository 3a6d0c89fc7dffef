"""One fit: train a ``ManifoldFlow`` from a ``FitSpec`` and return plain data.

``fit(spec) -> FitResult`` is the whole contract the pipeline relies on. ``Trainer`` holds
the state of a fit in progress; ``Trainer.state_dict`` captures all of it (model, optimiser,
learning-rate schedule, random generator, step, curve), so a fit restored from a checkpoint
continues exactly as an uninterrupted one would on the same device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from mflow.config import FitSpec, TrainSpec
from mflow.datasets import Dataset, check_enough_rows, load
from mflow.model import ManifoldFlow
from mflow.readout import estimate_dimension, noise_floor_variance

__all__ = ["CurvePoint", "FitResult", "Trainer", "fit", "noise_std", "resolve_device"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class CurvePoint:
    """What is recorded every ``log_every`` steps."""

    step: int  # steps done
    loss: float  # mean loss over the steps since the previous point
    noise_std: float  # data noise sigma_x in force at the last of those steps
    lr: float  # learning rate in force at the last of those steps
    estimate: int  # dimension read from the spectrum at this step
    eigenvalues: tuple[float, ...]  # spectrum of A A^T, descending


@dataclass(frozen=True)
class FitResult:
    """The outcome of one fit, as plain data."""

    status: str  # ok, diverged (loss became NaN/inf) or failed (an exception)
    error: str | None  # why, when not ok
    steps: int  # optimiser steps done
    id_estimate: int | None  # the dimension read from the final spectrum
    id_rule: str  # the readout rule that read it
    eigenvalues: tuple[float, ...]  # final spectrum of A A^T, descending
    curve: tuple[CurvePoint, ...]  # one point every log_every steps
    n: int  # number of training points
    ambient_dim: int  # dimension of the data space
    true_dim: int | None  # the data's dimension where known by construction
    wall_s: float  # training time, summed over restarts
    device: str  # where it trained
    diverged_step: int | None = None  # first step whose loss was not finite

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


class Trainer:
    """A fit in progress. ``run`` trains to ``spec.train.steps`` and returns a ``FitResult``.

    Args:
        spec: the fit.
        data: the points; loaded from ``spec.data`` when not given.
    """

    def __init__(self, spec: FitSpec, data: Dataset | None = None) -> None:
        train = spec.train
        if train.dtype not in _DTYPES:
            raise ValueError(f"train.dtype: unknown {train.dtype!r}; known: {sorted(_DTYPES)}")
        if train.batch_size < 1 or train.steps < 0 or train.log_every < 1:
            raise ValueError("train: batch_size and log_every must be >= 1, steps >= 0")
        self.spec = spec
        self.data = data if data is not None else load(spec.data)
        check_enough_rows(self.data, train.batch_size)
        self.device = resolve_device(train.device)
        dtype = _DTYPES[train.dtype]
        self.x = torch.as_tensor(self.data.x, device=self.device, dtype=dtype)
        self.model = ManifoldFlow.build(
            spec.model, spec.prior, self.data.sample_shape, seed=train.seed
        ).to(self.device, dtype)
        self._initialise_from_data()
        groups = [
            {"params": list(self.model.flow.parameters()), "weight_decay": train.weight_decay},
            {
                "params": list(self.model.prior.parameters()),
                "weight_decay": train.weight_decay_prior,
                "lr": train.lr_prior,
            },
        ]
        self.optimizer = torch.optim.Adam(
            [g for g in groups if g["params"]], lr=train.lr, foreach=True
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=train.lr_decay_every, gamma=train.lr_decay
        )
        self.generator = torch.Generator(device=self.device).manual_seed(train.seed)
        self.step = 0
        self.curve: list[CurvePoint] = []
        self.wall_s = 0.0
        self.diverged_step: int | None = None
        # Accumulated on the device, read only at logging steps: no host sync per step.
        self._loss_sum = torch.zeros((), device=self.device, dtype=dtype)
        self._first_bad = torch.full((), -1, device=self.device, dtype=torch.long)

    @torch.no_grad()
    def _initialise_from_data(self) -> None:
        """Centre the data; with ``prior_init='data'``, start ``A A^T`` at the data covariance.

        With ``A = I`` the prior first asks the flow to stretch the thin directions of the
        data to unit variance and squeeze the long ones, which folds the manifold before
        ``A`` has caught up; starting ``A`` at the prior's maximum-likelihood value for the
        identity flow (the flow's starting point) removes that push.
        """
        init = self.spec.train.prior_init
        if init not in ("identity", "data"):
            raise ValueError(f"train.prior_init: unknown {init!r}; known: 'data', 'identity'")
        self.model.offset.copy_(self.x.mean(dim=0))
        if init == "identity" or not hasattr(self.model.prior, "fit_covariance"):
            return
        z, _ = self.model.encode(self.x)
        noise = noise_std(self.spec.train, 0) ** 2
        cov = torch.cov(z.T).reshape(z.shape[1], z.shape[1])
        eye = torch.eye(z.shape[1], device=z.device, dtype=z.dtype)
        self.model.prior.fit_covariance(cov + noise * eye)

    # -- one step ---------------------------------------------------------------------------

    def _train_step(self) -> None:
        train = self.spec.train
        idx = torch.randint(
            self.data.n, (train.batch_size,), generator=self.generator, device=self.device
        )
        x = self.x[idx]
        sigma_x = noise_std(train, self.step)
        noise = torch.randn(x.shape, generator=self.generator, device=self.device, dtype=x.dtype)
        loss = self.model.loss(x + sigma_x * noise, self.generator, self.spec.prior.entropy_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), train.grad_clip, foreach=True
            )
        self.optimizer.step()
        self.scheduler.step()
        loss = loss.detach()
        bad = ~torch.isfinite(loss)
        first = torch.where(bad & (self._first_bad < 0), self.step, self._first_bad)
        self._first_bad = first
        self._loss_sum = self._loss_sum + loss
        self.step += 1

    def _log(self, since: int) -> CurvePoint:
        first_bad = int(self._first_bad)
        if first_bad >= 0:
            self.diverged_step = first_bad
        eigenvalues = tuple(float(v) for v in self.model.spectrum().cpu())
        finite = all(math.isfinite(v) for v in eigenvalues)
        readout = self.spec.readout
        point = CurvePoint(
            step=self.step,
            loss=float(self._loss_sum) / max(1, self.step - since),
            noise_std=noise_std(self.spec.train, max(0, self.step - 1)),
            lr=self.optimizer.param_groups[0]["lr"],
            estimate=self._estimate(eigenvalues) if finite else -1,
            eigenvalues=eigenvalues,
        )
        self._loss_sum = torch.zeros_like(self._loss_sum)
        self.curve.append(point)
        del readout
        return point

    def _estimate(self, eigenvalues: tuple[float, ...]) -> int:
        readout = self.spec.readout
        params = {"threshold": readout.threshold} if readout.rule == "threshold" else {}
        floor = noise_floor_variance(self.spec.prior.sigma2, self.spec.train.noise_floor)
        return estimate_dimension(eigenvalues, floor, readout.rule, **params)

    # -- the loop ---------------------------------------------------------------------------

    def run(self, callback: Callable[[CurvePoint, Trainer], Any] | None = None) -> FitResult:
        """Train until ``spec.train.steps`` (or divergence); call ``callback`` at each log.

        A callback that returns ``True`` stops the fit early (after the current point).
        """
        train = self.spec.train
        self.model.train()
        started = time.perf_counter()
        since = self.step
        try:
            while self.step < train.steps and self.diverged_step is None:
                self._train_step()
                if self.step % train.log_every == 0 or self.step == train.steps:
                    self.wall_s += time.perf_counter() - started
                    started = time.perf_counter()
                    point = self._log(since)
                    since = self.step
                    if self.diverged_step is None and callback is not None:
                        if callback(point, self) is True:
                            break
        finally:
            self.wall_s += time.perf_counter() - started
        return self.result()

    def result(self) -> FitResult:
        """The fit's outcome as it stands."""
        eigenvalues = tuple(float(v) for v in self.model.spectrum().cpu())
        readout = self.spec.readout
        status, error, estimate = "ok", None, None
        if self.diverged_step is not None:
            status = "diverged"
            error = f"loss became NaN or inf at step {self.diverged_step}"
        else:
            estimate = self._estimate(eigenvalues)
        return FitResult(
            status=status,
            error=error,
            steps=self.step,
            id_estimate=estimate,
            id_rule=readout.rule,
            eigenvalues=eigenvalues,
            curve=tuple(self.curve),
            n=self.data.n,
            ambient_dim=self.data.ambient_dim,
            true_dim=self.data.true_dim,
            wall_s=self.wall_s,
            device=str(self.device),
            diverged_step=self.diverged_step,
        )

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: tensors, dicts, lists and numbers only."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "step": self.step,
            "curve": [asdict(p) for p in self.curve],
            "wall_s": self.wall_s,
            "spec": self.spec.to_json(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``; refuses the state of a different fit."""
        if state["spec"] != self.spec.to_json():
            raise ValueError("checkpoint: it belongs to a different fit spec")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
        self.curve = [
            CurvePoint(**{**p, "eigenvalues": tuple(p["eigenvalues"])}) for p in state["curve"]
        ]
        self.wall_s = float(state["wall_s"])

    def save(self, path) -> None:
        """Write ``state_dict()`` to ``path`` (written to a temp name, then renamed)."""
        from pathlib import Path

        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)

    def restore(self, path) -> None:
        """Load a checkpoint written by ``save`` (tensors and plain data only)."""
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))


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
        >>> spec = FitSpec(data=DataSpec("line", n=200)).replace(train={"steps": 20})
        >>> fit(spec).status
        'ok'
    """
    trainer = Trainer(spec, data)
    if state is not None:
        trainer.load_state_dict(state)
    return trainer.run(callback)
