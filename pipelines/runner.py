"""The Ray adapter: each trial runs one fit, or one pack of small same-shaped fits; the driver
hears how each fit ends.

``run_trials`` cuts the fits into packs (``pipelines.execution.packing``; ``resources.pack`` fits at
most, ``auto`` sized from the model and the device) and runs one Tune trial per pack. A pack of
one fit trains with ``mflow.fit.Trainer``; a larger one with ``mflow.pack.PackTrainer``, which
trains its fits as one vectorised ensemble while each keeps its own data order, curve and result.

A trial (``_trial``) restores its trainer from the trial's latest checkpoint when Tune restarts
it after a failure (``FailureConfig(max_failures=retries)``), or from the newest checkpoint an
earlier, killed survey run left for the same fits, and trains. Every ``train.log_every`` steps
it calls ``tune.report`` with a few metrics per fit, and with a checkpoint holding the trainer's
full state when ``resources.checkpoint_every_s`` seconds have passed since the last one (each
checkpoint costs a copy and a snapshot of Tune's experiment state; a killed trial loses at most
that much work). Its last report's checkpoint also holds every fit's ``FitResult`` as JSON
(``result.json``): the driver reads them from there, so results reach the driver without passing
large spectra through Tune's metrics, and a fit whose final checkpoint an earlier run left (its
driver stopped before recording it) is recorded from that checkpoint without training again.

With ``resources.workers > 1`` a trial trains its one fit data-parallel: it starts a Ray Train
run of that many workers and hands its final checkpoint to Tune (``pipelines.execution.parallel``).

Trials reuse their Ray actors (``reuse_actors``): a new trial does not start a worker process
and import torch again, which costs seconds per trial on a small machine.

Checkpoints live under ``<storage>/<experiment>/<trial>/checkpoint_NNNNNN/`` (one experiment
per survey run; ``CheckpointConfig(num_to_keep=1)``); the trial folder of a single fit is named
by its fit id, that of a pack ``pack-<K>-<hash>`` (``packing.pack_id``), and each checkpoint's
``meta.json`` lists its fit ids. Only the driver writes Parquet and MLflow: ``run_trials``
forwards trial events, one per fit, to a ``FitEvents`` object in the driver process.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from mflow.config import FitSpec
from mflow.fit import CurvePoint, FitResult, Trainer
from pipelines.execution import packing
from pipelines.job import Fit, Resources
from pipelines.results.store import Store

__all__ = [
    "FitEvents",
    "init_ray",
    "latest_checkpoints",
    "plan_packs",
    "prune_checkpoints",
    "result_from_dict",
    "result_to_dict",
    "run_trials",
]

STATE_FILE = "state.pt"  # the trainer's state_dict (torch.save)
META_FILE = "meta.json"  # {"fit_ids": [...], "step": ..., "final": ..., "note": ...}
RESULT_FILE = "result.json"  # {fit_id: FitResult}, in the last checkpoint only
ARTIFACTS_FILE = "artifacts.npz"  # {"<fit_id>/<name>": array}, in the last checkpoint only
TOP_EIGENVALUES = 10  # eigenvalues reported as metrics at each step
PACK_PREFIX = "pack-"  # trial folders of packs (see packing.pack_id)

# Ray Tune's own console output and per-trial loggers are replaced by the survey's.
_TUNE_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}
_QUIET_LOGGERS = ("ray.tune", "ray.train", "ray.air")


# -- results as plain data -------------------------------------------------------------------


def result_to_dict(result: FitResult) -> dict[str, Any]:
    """A JSON-able dict of a ``FitResult``."""
    return asdict(result)


def result_from_dict(d: Mapping[str, Any]) -> FitResult:
    """Inverse of ``result_to_dict`` (``FitResult.from_dict``)."""
    return FitResult.from_dict(d)


# -- the trial (runs in a Ray worker) --------------------------------------------------------


def _metrics(fit_id: str, point: CurvePoint) -> dict[str, Any]:
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


def _artifacts(trainer, fit_ids: Sequence[str], results: Mapping[str, FitResult]
               ) -> dict[str, np.ndarray]:
    """Each ok fit's ``mflow.fit.fit_artifacts``, keyed ``<fit_id>/<name>``."""
    arrays = {}
    for k, fit_id in enumerate(fit_ids):
        if results[fit_id].status != "ok":
            continue
        made = trainer.artifacts() if len(fit_ids) == 1 else trainer.artifacts(k)
        arrays.update((f"{fit_id}/{name}", array) for name, array in made.items())
    return arrays


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
        _write_checkpoint(folder, trainer, fit_ids, results, note)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _write_checkpoint(
    folder: str, trainer, fit_ids: Sequence[str],
    results: Mapping[str, FitResult] | None = None, note: str | None = None,
) -> None:
    """A checkpoint's files in ``folder``: the trainer's state and ``meta.json``, and with
    final ``results`` the results and artifacts (shared by Tune's and Ray Train's
    checkpoints, ``pipelines.execution.parallel``)."""
    import torch

    torch.save(trainer.state_dict(), Path(folder, STATE_FILE))
    meta = {"fit_ids": list(fit_ids), "step": trainer.step, "final": results is not None,
            "note": note}
    Path(folder, META_FILE).write_text(json.dumps(meta))
    if results is not None:
        text = json.dumps({k: result_to_dict(r) for k, r in results.items()})
        Path(folder, RESULT_FILE).write_text(text)
        np.savez_compressed(Path(folder, ARTIFACTS_FILE),
                            **_artifacts(trainer, fit_ids, results))


def _restore(trainer, checkpoint) -> None:
    import torch

    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder, STATE_FILE), map_location=trainer.device,
                           weights_only=True)
    trainer.load_state_dict(state)


def _trainer(specs: Sequence[FitSpec], job: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The trial's trainer, restored from Tune's checkpoint of this trial (it must load) or
    from an earlier survey run's (used when it loads; else the fits start afresh, and the
    note returned beside the trainer says why)."""
    from ray import tune

    from mflow.pack import PackTrainer

    def make(datas=None):
        if len(specs) == 1:
            return Trainer(specs[0], datas[0] if datas else None)
        return PackTrainer(specs, datas)

    trainer, note = make(), None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        _restore(trainer, checkpoint)  # Tune restarted this trial: its state must load
    elif job.get("resume"):
        try:  # a checkpoint left by an earlier survey run; start afresh if it is unusable
            _restore(trainer, tune.Checkpoint(job["resume"]))
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint means: start afresh
            trainer = make(trainer.datas if len(specs) > 1 else [trainer.data])
            why = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            note = (f"could not continue from the checkpoint an earlier run left at "
                    f"{job['resume']} ({why}); trained from step 0")
    return trainer, note


def _trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one fit or one pack, checkpointed at logged steps."""
    import torch

    from pipelines.job.readers import register_readers

    register_readers()  # the worker loads the fits' data, maybe a user's .parquet file
    job = config["fit"]
    fit_ids = [f["fit_id"] for f in job["fits"]]
    torch.set_num_threads(max(1, int(job["threads"])))
    specs = [FitSpec.from_dict(json.loads(f["spec"])) for f in job["fits"]]
    trainer, note = _trainer(specs, job)
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
        pending[fit_ids[k]] = _metrics(fit_ids[k], point)

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


# -- the driver side -------------------------------------------------------------------------


class FitEvents:
    """What the driver hears about fits; override the methods it needs. Runs in the driver."""

    def started(self, fit_id: str) -> None:
        """A trial (re)started."""

    def progress(self, fit_id: str, metrics: Mapping[str, Any]) -> None:
        """A trial reported a logged step."""

    def retrying(self, fit_id: str, error: str, attempt: int) -> None:
        """A trial failed and Tune restarts it from its last checkpoint."""

    def kept(self, fit_id: str, arrays: Mapping[str, np.ndarray]) -> None:
        """An ok fit's arrays (``mflow.fit.fit_artifacts``), just before its ``finished``."""

    def noted(self, fit_id: str, note: str) -> None:
        """Something to record beside a fit that is not an error (it could not continue from
        an earlier run's checkpoint, so it trained afresh), just before its ``finished``."""

    def finished(self, fit_id: str, result: FitResult, retries: int) -> None:
        """A fit ended with a result (status ok or diverged)."""

    def failed(self, fit_id: str, error: str, detail: str, retries: int) -> None:
        """A fit failed after its retries; ``error`` is one line, ``detail`` the traceback."""


def _error_of(trial) -> tuple[str, str]:
    """One line and the full text of a trial's last error.

    Tune writes the error files in the driver's local trial folder first (they reach the
    storage folder later), so they are read from there.
    """
    detail = ""
    if trial.error_file and os.path.isfile(trial.error_file):
        detail = Path(trial.error_file).read_text(errors="replace")
    line = ""
    if trial.pickled_error_file and os.path.isfile(trial.pickled_error_file):
        try:
            from ray import cloudpickle

            with open(trial.pickled_error_file, "rb") as f:
                exc = cloudpickle.load(f)
            cause = getattr(exc, "cause", None) or exc
            line = f"{type(cause).__name__}: {cause}".strip().splitlines()[0]
        except Exception:  # noqa: BLE001 - fall back to the text of the error file
            line = ""
    if not line:
        lines = [x for x in detail.strip().splitlines() if x.strip()]
        line = lines[-1] if lines else "the trial failed"
    return line[:2000], detail


def _read_json(checkpoint, name: str) -> Any:
    with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{name}") as f:
        return json.loads(f.readall().decode())


def _read_results(checkpoint) -> dict[str, FitResult]:
    """``{fit_id: FitResult}`` from a trial's final checkpoint."""
    if checkpoint is None:
        raise RuntimeError("the trial ended without a checkpoint")
    return {k: result_from_dict(d) for k, d in _read_json(checkpoint, RESULT_FILE).items()}


def _read_note(checkpoint) -> str | None:
    """The note a trial's final checkpoint carries (see ``FitEvents.noted``), if any."""
    try:
        return _read_json(checkpoint, META_FILE).get("note")
    except (OSError, ValueError, AttributeError):
        return None


def _read_artifacts(checkpoint) -> dict[str, dict[str, np.ndarray]]:
    """``{fit_id: {name: array}}`` from a trial's final checkpoint; ``{}`` when it has none."""
    try:
        with checkpoint.filesystem.open_input_file(f"{checkpoint.path}/{ARTIFACTS_FILE}") as f:
            data = f.read()
    except (OSError, FileNotFoundError):
        return {}
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return Store.split_artifacts(npz)


def _make_callback(events: FitEvents):
    from ray import tune

    class _Forward(tune.Callback):
        """Turns Tune's trial events into ``FitEvents`` calls, in the driver."""

        def __init__(self, events: FitEvents) -> None:
            self.events = events
            self.errors: list[BaseException] = []

        def __getstate__(self) -> dict[str, Any]:
            return {}  # Tune pickles its run config; the driver's handlers stay here

        def __setstate__(self, state: dict[str, Any]) -> None:
            self.__init__(FitEvents())

        def _call(self, method, *args) -> None:
            if self.errors:
                return
            try:
                method(*args)
            except BaseException as exc:  # noqa: BLE001 - re-raised by run_trials
                self.errors.append(exc)

        def on_trial_start(self, iteration, trials, trial, **info):
            for fit_id in _fit_ids(trial):
                self._call(self.events.started, fit_id)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("final"):
                return
            fits = result.get("fits")
            if fits is None:  # a single fit reports its metrics flat
                self._call(self.events.progress, _fit_ids(trial)[0], result)
                return
            shared = {k: v for k, v in result.items() if k != "fits"}
            for fit_id, metrics in fits.items():
                self._call(self.events.progress, fit_id, {**shared, **metrics})

        def on_trial_recover(self, iteration, trials, trial, **info):
            line, _ = _error_of(trial)
            for fit_id in _fit_ids(trial):
                self._call(self.events.retrying, fit_id, line, trial.num_failures)

        def on_trial_complete(self, iteration, trials, trial, **info):
            try:
                results = _read_results(trial.checkpoint)
            except Exception as exc:  # noqa: BLE001 - recorded as failed fits
                results, arrays, error = {}, {}, f"no result: {exc}"
            else:
                arrays = _read_artifacts(trial.checkpoint)
                error = "no result: the pack's final checkpoint lacks it"
            note = _read_note(trial.checkpoint) if results else None
            for fit_id in _fit_ids(trial):
                if fit_id in results:
                    if note:
                        self._call(self.events.noted, fit_id, note)
                    if fit_id in arrays:
                        self._call(self.events.kept, fit_id, arrays[fit_id])
                    self._call(self.events.finished, fit_id, results[fit_id],
                               trial.num_failures)
                else:
                    self._call(self.events.failed, fit_id, error, "", trial.num_failures)

        def on_trial_error(self, iteration, trials, trial, **info):
            line, detail = _error_of(trial)
            for fit_id in _fit_ids(trial):
                self._call(self.events.failed, fit_id, line, detail, trial.num_failures)

    return _Forward(events)


def _trial_id(trial) -> str:
    return trial.config["fit"]["trial_id"]


def _fit_ids(trial) -> list[str]:
    return [f["fit_id"] for f in trial.config["fit"]["fits"]]


def _make_stopper(forward):
    from ray import tune

    class _StopOnDriverError(tune.Stopper):
        """Stops the survey when recording a fit failed (e.g. the results disk is full)."""

        def __init__(self, forward) -> None:
            self.forward = forward

        def __getstate__(self) -> dict[str, Any]:
            return {}

        def __setstate__(self, state: dict[str, Any]) -> None:
            self.forward = None

        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return self.forward is not None and bool(self.forward.errors)

    return _StopOnDriverError(forward)


def init_ray(address: str | None = None) -> bool:
    """Connect to the cluster at ``address``, or start a local Ray sized to this machine.

    Returns whether a connection was made here (so the caller knows to shut it down); an
    already initialised Ray is used as it is. Ray's token authentication is left to
    ``ray.init``: a local cluster gets a token, an existing cluster is joined with the token
    in ``RAY_AUTH_TOKEN`` / ``~/.ray/auth_token`` when it asks for one.
    """
    import ray

    if ray.is_initialized():
        return False
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        from ray.exceptions import AuthenticationError

        _check_reachable(address)
        try:
            ray.init(address=address, **options)
        except AuthenticationError as exc:
            raise ConnectionError(
                f"{address}: the cluster asks for a token ({exc}); set RAY_AUTH_MODE=token "
                "and RAY_AUTH_TOKEN, or put the token in ~/.ray/auth_token"
            ) from None
    else:
        ray.init(num_cpus=_machine_cpus(), **options)
    return True


def _machine_cpus() -> int:
    """The CPUs this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on a ``host:port`` nobody listens at (``ray.init`` retries for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto", "ray://...": left to ray.init
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach a Ray cluster at {address} ({exc})") from None


def _concurrency(resources: Resources) -> int | None:
    """Tune's ``max_concurrent_trials``: the job's ``max_concurrent``, else no cap.

    Without a cap Tune starts a trial whenever the cluster has room for one, on the nodes of
    the survey's start and on those that join later (its pending trials are what asks the
    autoscaler for workers). A cap taken from the cluster at the start would be 1 on a
    cluster whose head trains nothing and whose workers start at 0, as ``cluster.yaml``'s.
    """
    return resources.max_concurrent


def _slots_now(resources: Resources) -> int:
    """Trials the cluster holds at once now (its CPUs, GPUs), capped by ``max_concurrent``;
    at least 1."""
    import ray

    cluster = ray.cluster_resources()
    limit = int(cluster.get("CPU", 1) // resources.cpu)
    if resources.gpu > 0:
        limit = min(limit, int(cluster.get("GPU", 0) // resources.gpu))
    if resources.max_concurrent is not None:
        limit = min(limit, resources.max_concurrent)
    return max(1, limit)


GPU_MEMORY_FALLBACK = 16 * 2**30  # bytes assumed for a GPU that could not be asked in time


def _gpu_memory(resources: Resources, timeout_s: float = 300.0) -> float:
    """Total memory of a GPU a trial gets, asked of one through a Ray task (the driver may
    have none); ``GPU_MEMORY_FALLBACK`` if none answers in ``timeout_s``."""
    import ray

    def probe() -> int:
        import torch

        return torch.cuda.get_device_properties(0).total_memory

    task = ray.remote(probe).options(num_gpus=min(1.0, resources.gpu), num_cpus=0)
    try:
        return float(ray.get(task.remote(), timeout=timeout_s))
    except Exception:  # noqa: BLE001 - no GPU in time, or none usable: assume a small one
        return float(GPU_MEMORY_FALLBACK)


def _trial_memory(resources: Resources) -> float:
    """Bytes one trial may fill: its share of a GPU's memory, or else its share of the
    cluster's memory when every trial slot it has now is busy."""
    import ray

    if resources.gpu > 0:
        return min(1.0, resources.gpu) * _gpu_memory(resources)
    return ray.cluster_resources().get("memory", 2**31) / _slots_now(resources)


def _auto_sizes(fits: Sequence[Fit], resources: Resources) -> dict[str, int]:
    """``resources.pack: auto``: fits per pack for each group of packable fits, from one fit's
    cost (its data loaded here) and the trial's device (``packing.auto_pack_size``)."""
    from mflow.datasets import load
    from mflow.pack import pack_key
    from pipelines.job.readers import register_readers

    register_readers()
    memory = _trial_memory(resources)
    sizes: dict[str, int] = {}
    for fit in fits:
        key = pack_key(fit.spec)
        if key in sizes:
            continue
        try:
            cost = packing.step_cost(fit.spec, load(fit.spec.data))
        except Exception:  # noqa: BLE001 - the fit's own trial reports why it cannot run
            sizes[key] = 1
            continue
        sizes[key] = packing.auto_pack_size(cost, gpu=resources.gpu > 0, memory=memory)
    return sizes


def plan_packs(
    fits: Sequence[Fit], resources: Resources, resume: Mapping[str, str] | None = None
) -> list[list[Fit]]:
    """The trials ``run_trials`` runs for ``fits``: packs of at most ``resources.pack`` fits
    (sized per group for ``auto``), earlier runs' packs formed again (``packing.make_packs``)."""
    if resources.pack == "auto":
        sizes: dict[str, int] | int = _auto_sizes(fits, resources)
    else:
        sizes = int(resources.pack)
    return packing.make_packs(fits, sizes, resume)


def _final_results(resume: Mapping[str, str], wanted: set[str]) -> dict[str, FitResult]:
    """Results of ``wanted`` fits held by the final checkpoints that earlier runs left."""
    from ray import tune

    out: dict[str, FitResult] = {}
    for location in sorted({resume[k] for k in wanted if k in resume}):
        try:
            checkpoint = tune.Checkpoint(location)
            if not _read_json(checkpoint, META_FILE).get("final"):
                continue
            results = _read_results(checkpoint)
        except Exception:  # noqa: BLE001 - an unreadable checkpoint: its trial will cope
            continue
        out.update(
            (k, r) for k, r in results.items() if k in wanted and resume.get(k) == location
        )
    return out


def run_trials(
    fits: Sequence[Fit],
    resources: Resources,
    storage: str,
    experiment: str,
    events: FitEvents,
    resume: Mapping[str, str] | None = None,
) -> None:
    """Run ``fits`` as Tune trials on the connected Ray cluster; blocks until they end.

    Args:
        fits: the fits to run (one trial per pack; see ``plan_packs``).
        resources: CPUs, GPUs, fits per pack, concurrency and retries per trial.
        storage: Tune's ``storage_path`` (a local path or a URI Ray takes).
        experiment: the experiment folder under ``storage`` (one per survey run).
        events: told, in this process, when each fit starts, reports, retries and ends.
        resume: ``{fit_id: checkpoint}`` left by earlier runs, to continue from. A fit whose
            checkpoint is final is recorded from it (``started``, then ``finished``) when it
            ended ok, and trains afresh otherwise (a retry).
    """
    from ray import tune

    for key, value in _TUNE_ENV.items():
        os.environ.setdefault(key, value)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    resume = dict(resume or {})
    finals = _final_results(resume, {fit.fit_id for fit in fits})
    for fit_id, result in finals.items():
        if result.status == "ok":
            events.started(fit_id)
            events.finished(fit_id, result, 0)
        else:
            del resume[fit_id]
    fits = [f for f in fits if f.fit_id not in finals or finals[f.fit_id].status != "ok"]
    if not fits:
        return
    threads = max(1, int(resources.cpu))
    configs = []
    for pack in plan_packs(fits, resources, resume):
        ids = [fit.fit_id for fit in pack]
        locations = {resume.get(fit_id) for fit_id in ids}
        configs.append(
            {
                "trial_id": ids[0] if len(ids) == 1 else packing.pack_id(ids),
                "fits": [{"fit_id": fit.fit_id, "spec": fit.spec.to_json()} for fit in pack],
                "resume": locations.pop() if len(locations) == 1 else None,
                "threads": threads,
                "checkpoint_every_s": resources.checkpoint_every_s,
            }
        )
    forward = _make_callback(events)
    if resources.workers > 1:  # each fit data-parallel: pipelines.execution.parallel
        from pipelines.execution import parallel

        trainable = parallel.trainable(parallel.DataParallel(
            resources.workers, resources.cpu, resources.gpu, resources.retries, storage,
            experiment))
    else:
        trainable = tune.with_resources(_trial, {"cpu": resources.cpu, "gpu": resources.gpu})
    tuner = tune.Tuner(
        trainable,
        param_space={"fit": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=_concurrency(resources),
            reuse_actors=True,
            trial_name_creator=_trial_id,
            trial_dirname_creator=_trial_id,
        ),
        run_config=tune.RunConfig(
            name=experiment,
            storage_path=storage,
            verbose=0,
            callbacks=[forward],
            stop=_make_stopper(forward),
            failure_config=tune.FailureConfig(max_failures=resources.retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    tuner.fit()
    if forward.errors:
        raise forward.errors[0]


# -- checkpoints left by earlier runs --------------------------------------------------------


def _list(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    try:
        return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _checkpoints(fs: pafs.FileSystem, trial: pafs.FileInfo) -> list[tuple[pafs.FileInfo, dict]]:
    """The checkpoint folders of a trial folder with their ``meta.json`` (unreadable: left out)."""
    out = []
    for checkpoint in _list(fs, trial.path):
        if not checkpoint.base_name.startswith("checkpoint_"):
            continue
        try:
            with fs.open_input_stream(f"{checkpoint.path}/{META_FILE}") as f:
                meta = json.loads(f.readall().decode())
            meta["step"] = int(meta["step"])
            meta["fit_ids"] = list(meta.get("fit_ids") or [trial.base_name])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        out.append((checkpoint, meta))
    return out


def latest_checkpoints(
    fs: pafs.FileSystem, root: str, uri: str, fit_ids: Sequence[str]
) -> dict[str, str]:
    """``{fit_id: checkpoint}``: the checkpoint with the most steps that any earlier run left
    for each fit, its own or its pack's (fits of one pack share a checkpoint).

    ``root`` is the Tune storage folder on ``fs``; ``uri`` the same folder as Ray names it
    (equal for local paths), used to build the returned locations.
    """
    wanted = set(fit_ids)
    best: dict[str, tuple[int, str, str, str]] = {}
    for experiment in _list(fs, root):
        if experiment.type != pafs.FileType.Directory:
            continue
        for trial in _list(fs, experiment.path):
            if trial.type != pafs.FileType.Directory:
                continue
            if trial.base_name not in wanted and not trial.base_name.startswith(PACK_PREFIX):
                continue
            for checkpoint, meta in _checkpoints(fs, trial):
                rank = (meta["step"], experiment.base_name, checkpoint.base_name)
                location = "/".join(
                    (uri.rstrip("/"), experiment.base_name, trial.base_name, checkpoint.base_name)
                )
                for fit_id in wanted.intersection(meta["fit_ids"]):
                    if fit_id not in best or rank > best[fit_id][:3]:
                        best[fit_id] = (*rank, location)
    return {fit_id: entry[3] for fit_id, entry in best.items()}


def prune_checkpoints(fs: pafs.FileSystem, root: str, fit_ids: Sequence[str]) -> None:
    """Delete the trial folders of ``fit_ids`` (fits stored for good), then empty runs.

    A pack's folder goes when every fit its checkpoints name is stored, or when it holds no
    checkpoint (nothing to continue from).
    """
    done = set(fit_ids)
    for experiment in _list(fs, root):
        if experiment.type != pafs.FileType.Directory:
            continue
        remaining = False
        for trial in _list(fs, experiment.path):
            if trial.type != pafs.FileType.Directory:
                continue
            if trial.base_name.startswith(PACK_PREFIX):
                names = {i for _, meta in _checkpoints(fs, trial) for i in meta["fit_ids"]}
                finished = names <= done
            else:
                finished = trial.base_name in done
            if finished:
                fs.delete_dir(trial.path)
            else:
                remaining = True
        if not remaining:
            fs.delete_dir(experiment.path)
    if not _list(fs, root):
        try:
            fs.delete_dir(root)
        except (FileNotFoundError, OSError):
            pass
