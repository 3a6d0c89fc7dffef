"""Data-parallel fits: one fit trained by several processes through Ray Train.

A fit too large for one device runs with ``resources.workers = W > 1``: its Tune trial starts a
Ray Train ``TorchTrainer`` of ``W`` workers, each holding ``resources.cpu`` CPUs and
``resources.gpu`` GPUs (Ray 2.60 runs a Train run from inside a Tune function trainable; passing
a trainer to a ``Tuner`` is deprecated). The workers form a torch.distributed group (gloo on
CPUs, NCCL on GPUs) and train with the project's one training loop, ``mflow.pack.PackTrainer``,
as a ``ShardedTrainer``: every step of the fit is shared by the ``W`` processes.

The maths. The loss of a step is a mean over the global batch of ``B = train.batch_size``
points, ``L = (1/B) sum_i l_i``. Every worker draws the whole batch from the fit's generator, as
the one-process loop does, and evaluates the loss on its ``b = B / W`` rows only; its shard's
mean ``L_r`` has ``L = (1/W) sum_r L_r``, and so ``grad L = (1/W) sum_r grad L_r``. The shards'
gradients are averaged (one ``all_reduce``) before the gradient clipping and the optimiser
step, so every worker takes the step the one-process loop takes on the whole batch (up to the
order of floating-point sums) and all hold the same weights. The logged loss is the global
mean, so all agree on divergence and on early stop. The closed-form prior
(``train.prior_update: moment``) follows the second moment of the codes of the whole batch,
gathered from the shards in order.

Checkpoints are Ray Train's: every ``train.log_every`` steps all workers report, and the first
one writes the trainer's state (the same ``state.pt`` and ``meta.json`` as a Tune trial's
checkpoint, ``pipelines.execution.trial``) when ``resources.checkpoint_every_s`` has passed. A
killed worker makes Ray Train restart the worker group (``FailureConfig(max_failures=retries)``),
which continues from the latest checkpoint; the fit's note says from which step. An earlier
survey run's checkpoint that cannot be restored as it was taken is treated as a Tune trial
treats it (``pipelines.execution.checkpoints.resume``). The Train run
lives in the trial's own folder (``<storage>/<experiment>/<trial>/``), so a survey run that was
killed is continued by the next one from there, as any trial is, and a Tune restart of the trial
continues the Train run. The final report carries the fit's result; the trial hands that
checkpoint to Tune, and the driver records it as it records any trial's.

``resources.workers > 1`` needs ``resources.pack: 1`` (a trial trains one fit; packing many
small fits and spreading one large fit over devices are opposite remedies), whole GPUs when
there are GPUs (NCCL runs one process per device), a batch that splits into equal shards, and no
batch entropy term (``prior.entropy_weight``, which couples every pair of points of the batch).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from mflow.config import FitSpec
from mflow.datasets import Dataset
from mflow.fit import FitResult
from mflow.pack import PackTrainer

__all__ = ["RESTARTS_FILE", "DataParallel", "ShardedTrainer", "trainable", "worker_loop"]

#: Train checkpoints' folder names: ``checkpoint_`` as ``checkpoints.latest_checkpoints`` looks for,
#: apart from the names Tune gives its own checkpoints in the same trial folder.
CHECKPOINT_PREFIX = "checkpoint_train_"
RESTARTS_FILE = "restarts.json"  # [step, ...]: where the worker group continued after a failure
#: Logical memory a data-parallel trial asks for: its process only starts and watches the Train
#: run (the workers hold the CPUs and GPUs), so it needs no CPU, and Ray asks a bundle for some
#: resource.
TRIAL_MEMORY = 256 * 2**20


class ShardedTrainer(PackTrainer):
    """One fit whose every step is shared by the processes of a torch.distributed group.

    Each process holds the whole fit (its data, weights, optimiser and random generator) and
    draws the whole global batch, so the generator advances as in the one-process loop; it
    evaluates the loss on its own rows of the batch. See the module docstring for why the
    average of the shards' gradients is the gradient of the global batch.

    Args:
        spec: the fit; ``train.batch_size`` must split into equal shards, and
            ``prior.entropy_weight`` must be 0.
        data: its points; loaded from ``spec.data`` when not given.
        group: the process group (default: the global one, which must be initialised).
    """

    def __init__(self, spec: FitSpec, data: Dataset | None = None, group=None) -> None:
        self.group = group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        batch = spec.train.batch_size
        if batch % self.world:
            raise ValueError(
                f"train.batch_size: {batch} does not split into {self.world} equal shards "
                f"(resources.workers: {self.world}); use a multiple of {self.world}"
            )
        if spec.prior.entropy_weight:
            raise ValueError(
                f"prior.entropy_weight: {spec.prior.entropy_weight:g} with resources.workers: "
                f"{self.world}; the batch entropy term couples every pair of points of the "
                "batch, so a data-parallel fit cannot split it; use resources.workers: 1"
            )
        super().__init__([spec], None if data is None else [data])
        if dist.get_backend(group) == "nccl" and self.device.type != "cuda":
            raise ValueError(
                f"train.device: {spec.train.device!r} trains on {self.device}, but the workers "
                "hold GPUs (NCCL); use train.device: auto"
            )
        shard = batch // self.world
        self._rows = slice(self.rank * shard, (self.rank + 1) * shard)
        self._lone = self._losses
        self._losses = self._shared_losses

    def _draw(self) -> tuple[Tensor, Tensor]:
        """This process's rows of the global batch (drawn whole: the generator's order)."""
        x, eps = super()._draw()
        return x[:, self._rows], eps[:, self._rows]

    def _shared_losses(self, params, buffers, x: Tensor, eps: Tensor):
        """The shard's loss, carrying the global batch's value, and the whole batch's codes."""
        out = self._lone(params, buffers, x, eps)
        losses, codes = out if self.moment else (out, None)
        mean = losses.detach().clone()
        dist.all_reduce(mean, group=self.group)
        mean /= self.world
        # The value of the global mean (every process judges divergence alike), the gradient of
        # this shard's mean (averaged over the processes in _clip).
        losses = losses + (mean - losses.detach())
        if codes is None:
            return losses
        parts = [torch.empty_like(codes) for _ in range(self.world)]
        dist.all_gather(parts, codes.contiguous(), group=self.group)
        return losses, torch.cat(parts, dim=1)

    def _clip(self) -> None:
        """Average the shards' gradients (one all_reduce), then clip as the loop does."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, group=self.group)
            flat /= self.world
            for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
                g.copy_(part.view_as(g))
        super()._clip()

    def results(self) -> list[FitResult]:
        """The fit's result, its ``device`` naming the processes that trained it (``2 x cpu``)."""
        return [dataclasses.replace(r, device=f"{self.world} x {r.device}")
                for r in super().results()]

    def artifacts(self, k: int = 0) -> dict[str, np.ndarray]:
        """``fit_artifacts`` of the fit (``k`` is 0: a data-parallel trial trains one fit)."""
        return super().artifacts(k)


# -- the Train workers -----------------------------------------------------------------------


def _read_restarts(checkpoint) -> list[int]:
    with checkpoint.as_directory() as folder:
        path = Path(folder, RESTARTS_FILE)
        return json.loads(path.read_text()) if path.exists() else []


def _start(spec: FitSpec, job: Mapping[str, Any]) -> tuple[Any, list[int]]:
    """The worker's trainer (a ``checkpoints.Resumed``), restored from the Train run's latest
    checkpoint (after a worker failure or a restart of the trial), else from an earlier survey
    run's checkpoint (``checkpoints.resume``: its note, or its refusal, when that cannot be
    restored as it was taken). Also returns the steps the worker group continued from after
    failures."""
    import ray.train

    from pipelines.execution.checkpoints import Resumed, restore, resume

    trainer = ShardedTrainer(spec)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        restore(trainer, checkpoint)  # this Train run's own state: it must load
        return Resumed(trainer), [*_read_restarts(checkpoint), trainer.step]
    return resume(trainer, job, lambda: ShardedTrainer(spec, trainer.datas[0]),
                  ray.train.Checkpoint), []


def _note(restarts: list[int], note: str | None, workers: int) -> str | None:
    """What the driver records beside the fit: worker-group restarts and ``note``."""
    notes = [note] if note else []
    if restarts:
        steps = ", ".join(str(s) for s in restarts)
        notes.append(f"data-parallel over {workers} workers: the worker group restarted after "
                     f"a failure {len(restarts)} time(s) and continued from the checkpoint at "
                     f"step {steps}")
    return "; ".join(notes) or None


def worker_loop(config: dict[str, Any]) -> None:
    """Ray Train's per-worker function: train the trial's one fit as a ``ShardedTrainer``."""
    import ray.train
    import ray.train.torch

    from pipelines.execution.checkpoints import write_checkpoint
    from pipelines.execution.trial import metrics_of
    from pipelines.job.readers import register_readers

    register_readers()  # the worker loads the fit's data, maybe a user's .parquet file

    job = config["fit"]
    fit_id = job["fits"][0]["fit_id"]
    spec = FitSpec.from_dict(json.loads(job["fits"][0]["spec"]))
    torch.set_num_threads(max(1, int(job["threads"])))
    if torch.cuda.is_available() and job["gpu"] > 0:
        torch.cuda.set_device(ray.train.torch.get_device())
    resumed, restarts = _start(spec, job)
    trainer, note = resumed.trainer, resumed.note
    if resumed.refused:  # every worker decides alike (one file): the run ends untrained
        ray.train.report({"step": trainer.step, "final": True, "fit_ids": [fit_id],
                          "refused": resumed.refused, "note": note})
        return
    first = trainer.rank == 0
    last_checkpoint = time.monotonic()

    def report(metrics: dict[str, Any], results=None) -> None:
        """Every worker reports (Train's barrier); the first writes a checkpoint when due, and
        the final one (``results``) always."""
        nonlocal last_checkpoint
        final = bool(metrics.get("final"))
        due = final or time.monotonic() - last_checkpoint >= job["checkpoint_every_s"]
        name = f"{CHECKPOINT_PREFIX}{trainer.step:09d}{'_final' if final else ''}"
        if not (first and due):
            ray.train.report(metrics, checkpoint_dir_name=name)
            return
        with tempfile.TemporaryDirectory(prefix="mflow-ckpt-") as folder:
            write_checkpoint(folder, trainer, [fit_id], results,
                              _note(restarts, note, trainer.world))
            Path(folder, RESTARTS_FILE).write_text(json.dumps(restarts))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder),
                             checkpoint_dir_name=name)
        last_checkpoint = time.monotonic()

    logged: dict[str, dict[str, Any]] = {}

    def keep(_k: int, point, _trainer) -> None:
        logged["point"] = metrics_of(fit_id, point)

    def after_log(_trainer) -> None:
        # Reported once the loop has decided the fit's stop at this step, so a checkpoint
        # holds it; every worker reports here alike (no point: its loss was not finite).
        report(logged.pop("point", {"fit_id": fit_id, "step": trainer.step}))

    result = trainer.run(keep, after_log)[0]
    report({"step": trainer.step, "final": True, "fit_ids": [fit_id],
            "statuses": [result.status]}, results={fit_id: result})


# -- the Tune trial --------------------------------------------------------------------------


@dataclass(frozen=True)
class DataParallel:
    """How a data-parallel trial runs its Train run (from ``resources`` and the survey run)."""

    workers: int  # processes per fit (resources.workers)
    cpu: float  # CPUs per worker
    gpu: float  # GPUs per worker: 0, or 1 (NCCL); fractions are refused by the job's check
    retries: int  # worker-group restarts from the latest checkpoint (Train's max_failures)
    storage: str  # Tune's storage_path: the Train run lives in <storage>/<experiment>/<trial>
    experiment: str


def _trial(config: dict[str, Any], plan: DataParallel) -> None:
    """Ray Tune function trainable: start the fit's Train run, wait for it, and hand its final
    checkpoint (state, result, artifacts) to Tune."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    job = {**config["fit"], "gpu": plan.gpu}
    resources = {"CPU": plan.cpu, **({"GPU": plan.gpu} if plan.gpu else {})}
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"fit": job},
        torch_config=TorchConfig(backend="nccl" if plan.gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.workers, use_gpu=plan.gpu > 0, resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=job["trial_id"],
            storage_path=f"{plan.storage.rstrip('/')}/{plan.experiment}",
            failure_config=ray.train.FailureConfig(max_failures=plan.retries),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            callbacks=[TuneReportCallback()],  # the workers' progress reaches the driver
        ),
    )
    result = trainer.fit()
    final = {"step": result.metrics.get("step"), "final": True,
             "fit_ids": [f["fit_id"] for f in job["fits"]],
             "statuses": result.metrics.get("statuses"),
             **{k: result.metrics[k] for k in ("refused", "note") if k in result.metrics}}
    tune.report(final, checkpoint=result.checkpoint)


def trainable(plan: DataParallel) -> Callable[..., Any]:
    """The Tune trainable of data-parallel trials: it asks only for ``TRIAL_MEMORY`` (its
    workers ask for the CPUs and GPUs when the Train run starts)."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(_trial, plan=plan),
                               {"cpu": 0, "memory": TRIAL_MEMORY})
