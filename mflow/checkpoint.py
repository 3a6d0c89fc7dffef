"""Checkpoints of the training loop on local disk: a trainer's ``state_dict`` in one file.

The state of ``mflow.pack.PackTrainer`` (and of ``mflow.fit.Trainer``, a pack of one) is
tensors, lists and numbers only, so it is saved with ``torch.save`` and read back with
``weights_only=True`` (no pickled code runs on load). The file is written atomically
(``mflow.files.atomic_write``): a run killed while saving leaves the previous checkpoint, never
half of a new one. ``pipelines.execution.checkpoints`` puts the same state in Ray Tune's
checkpoints; ``mflow.batch`` keeps one such file per pack.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import torch

from mflow.files import atomic_write

__all__ = ["RESTART_FLAG", "error_line", "load_checkpoint", "save_checkpoint"]

#: The flag (of ``survey run`` and ``python -m mflow.batch``) that lets a fit whose earlier
#: checkpoint cannot be restored as it was taken train from step 0; without it, it is not
#: trained.
RESTART_FLAG = "--restart-unresumable"


def error_line(exc: BaseException, limit: int = 300) -> str:
    """``exc`` as one line of at most ``limit`` characters, for a note or a log.

    Example:
        >>> error_line(ValueError("bad\\n  state"))
        'ValueError: bad state'
    """
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:limit]


class _Stateful(Protocol):
    device: torch.device

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def save_checkpoint(trainer: _Stateful, path: str | os.PathLike) -> Path:
    """Write ``trainer.state_dict()`` to ``path`` atomically; returns the path.

    Example:
        >>> import tempfile, pathlib
        >>> from mflow.config import DataSpec, FitSpec
        >>> from mflow.pack import PackTrainer
        >>> spec = FitSpec(data=DataSpec("sine", n=300)).replace(train={"steps": 5})
        >>> trainer = PackTrainer([spec]); _ = trainer.run()
        >>> path = save_checkpoint(trainer, pathlib.Path(tempfile.mkdtemp()) / "pack.pt")
        >>> again = PackTrainer([spec]); load_checkpoint(again, path); again.step
        5
    """
    state = trainer.state_dict()
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(trainer: _Stateful, path: str | os.PathLike) -> None:
    """Continue ``trainer`` from the checkpoint at ``path`` (``save_checkpoint``); its
    ``load_state_dict`` refuses the state of other fits."""
    state = torch.load(path, map_location=trainer.device, weights_only=True)
    trainer.load_state_dict(state)
