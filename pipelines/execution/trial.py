"""The trial, run in a Ray worker: one fit or one pack trained, restored from a checkpoint
when there is one, reporting its logged steps to Tune with checkpoints.

A trial (``train_trial``) restores its trainer from the trial's latest checkpoint when Tune restarts
it after a failure (``FailureConfig(max_failures=retries)``), or from the newest checkpoint an
earlier, killed survey run left for the same fits, and trains (when the earlier checkpoint
cannot be restored as it was taken, the trial ends untrained, or trains from step 0 where the
run allows it: ``pipelines.execution.checkpoints.resume``). Every ``train.log_every`` steps
it calls ``tune.report`` with a few metrics per fit, and with a checkpoint holding the trainer's
full state when ``resources.checkpoint_every_s`` seconds have passed since the last one (each
checkpoint costs a copy and a snapshot of Tune's experiment state; a killed trial loses at most
that much work). Its last report's checkpoint also holds every fit's ``FitResult`` as JSON
(``result.json``): the driver reads them from there, so results reach the driver without passing
large spectra through Tune's metrics.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mflow.config import FitSpec
from mflow.fit import CurvePoint, FitResult, Trainer
from pipelines.execution.checkpoints import Resumed, restore, resume, write_checkpoint

__all__ = ["TOP_EIGENVALUES", "metrics_of", "train_trial"]

TOP_EIGENVALUES = 10  # eigenvalues reported as metrics at each step


def metrics_of(fit_id: str, point: CurvePoint) -> dict[str, Any]:
    """What Tune hears of one logged point of a fit (a few numbers, not the spectrum)."""
    metrics = {
        "fit_id": fit_id,
        "step": point.step,
        "loss": point.loss,
        "estimate": point.estimate,
        "noise_std": point.noise_std,
        "lr": point.lr,
    }
    if point.local_dim is not None:
        metrics["local"] = point.local_dim  # "local_dim" is the fit's final one
    for i, value in enumerate(point.eigenvalues[:TOP_EIGENVALUES]):
        metrics[f"eig_{i}"] = value
    return metrics


def _report(
    trainer, fit_ids: Sequence[str], metrics: dict[str, Any],
    results: Mapping[str, FitResult] | None = None, checkpoint: bool = True,
    note: str | None = None,
) -> None:
    """``tune.report`` ``metrics``, with a checkpoint of ``trainer`` (a ``Trainer`` or a
    ``PackTrainer``) when asked, and the fits' results and artifacts when they are final
    (with ``note``, what the driver should record beside them)."""
    from ray import tune

    if not checkpoint:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="mflow-ckpt-") as folder:
        write_checkpoint(folder, trainer, fit_ids, results, note)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _trainer(specs: Sequence[FitSpec], job: Mapping[str, Any]) -> Resumed:
    """The trial's trainer, restored from Tune's checkpoint of this trial (it must load) or
    from an earlier survey run's (``checkpoints.resume``: when that cannot be restored as it
    was taken, the note says why, and the fits train afresh only where the run allows it)."""
    from ray import tune

    from mflow.pack import PackTrainer

    def make(datas=None):
        if len(specs) == 1:
            return Trainer(specs[0], datas[0] if datas else None)
        return PackTrainer(specs, datas)

    trainer = make()
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        restore(trainer, checkpoint)  # Tune restarted this trial: its state must load
        return Resumed(trainer)
    datas = trainer.datas if len(specs) > 1 else [trainer.data]
    return resume(trainer, job, lambda: make(datas), tune.Checkpoint)


def train_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one fit or one pack, checkpointed at logged steps."""
    import torch
    from ray import tune

    from pipelines.job.readers import register_readers

    register_readers()  # the worker loads the fits' data, maybe a user's .parquet file
    job = config["fit"]
    fit_ids = [f["fit_id"] for f in job["fits"]]
    torch.set_num_threads(max(1, int(job["threads"])))
    specs = [FitSpec.from_dict(json.loads(f["spec"])) for f in job["fits"]]
    resumed = _trainer(specs, job)
    trainer, note = resumed.trainer, resumed.note
    if resumed.refused:  # ends the trial untrained: the driver records the fits as failed
        tune.report({"step": trainer.step, "final": True, "fit_ids": fit_ids,
                     "refused": resumed.refused, "note": note})
        return
    last_checkpoint = time.monotonic()

    def report(metrics: dict[str, Any]) -> None:
        nonlocal last_checkpoint
        due = time.monotonic() - last_checkpoint >= job["checkpoint_every_s"]
        _report(trainer, fit_ids, metrics, checkpoint=due)
        if due:
            last_checkpoint = time.monotonic()

    # The points of one logged step are reported (and checkpointed) once every fit's early
    # stop at that step is decided: a checkpoint taken before it would resume a fit that
    # settled there past its stop.
    pending: dict[str, dict[str, Any]] = {}

    def collect(k: int, point: CurvePoint, _pack) -> None:
        pending[fit_ids[k]] = metrics_of(fit_ids[k], point)

    def after_log(pack) -> None:
        if not pending:
            return
        if len(specs) == 1:
            metrics = pending[fit_ids[0]]
        else:  # one report per logged step, with the points of every fit logged at it
            metrics = {"step": pack.step, "fits": dict(pending)}
        pending.clear()
        report(metrics)

    loop = trainer.pack if len(specs) == 1 else trainer
    results = loop.run(collect, after_log)
    final = {"step": trainer.step, "final": True, "fit_ids": fit_ids,
             "statuses": [r.status for r in results]}
    _report(trainer, fit_ids, final, results=dict(zip(fit_ids, results, strict=True)),
            note=note)
