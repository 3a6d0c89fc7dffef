"""One fit: train a ``ManifoldFlow`` from a ``FitSpec`` and return plain data.

``fit(spec) -> FitResult`` is the whole contract the pipeline relies on. ``Trainer`` holds
the state of a fit in progress; ``Trainer.state_dict`` captures all of it (model, optimiser,
learning-rate schedule, random generator, step, curve), so a fit restored from a checkpoint
continues exactly as an uninterrupted one would on the same device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import Tensor

# The fit's pieces live in their own modules; mflow.fit names them too, as the one place a
# caller imports a fit's API from.
from mflow.artifacts import (
    fit_artifacts,
    flowless_estimate,
    heldout_batch,
    heldout_loss,
    jacobian_estimate,
    local_codes,
    local_estimate,
)
from mflow.checkpoint import load_checkpoint, save_checkpoint
from mflow.config import FitSpec
from mflow.datasets import Dataset
from mflow.model import ManifoldFlow
from mflow.outcome import (
    CurvePoint,
    FitResult,
    early_stop_due,
    fit_settling,
    make_result,
    read_dimension,
)
from mflow.readout import readout_cut
from mflow.training import (
    DTYPES,
    build_model,
    check_train,
    make_optimizer,
    noise_std,
    prior_lr,
    prior_update,
    prior_update_settings,
    resolve_device,
)

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
    "flowless_estimate",
    "heldout_batch",
    "heldout_loss",
    "jacobian_estimate",
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
