"""The Ray adapter: each fit runs as one Ray Tune trial; the driver hears how each one ends.

A trial (``_trial``) builds a ``mflow.fit.Trainer``, restores it from the trial's latest
checkpoint when Tune restarts it after a failure (``FailureConfig(max_failures=retries)``),
or from the newest checkpoint an earlier, killed survey run left for the same fit id, and
trains. Every ``train.log_every`` steps it calls ``tune.report`` with a few metrics, and with
a checkpoint holding the trainer's full state when ``resources.checkpoint_every_s`` seconds
have passed since the last one (each checkpoint costs a copy and a snapshot of Tune's
experiment state; a killed trial loses at most that much work). Its last report's
checkpoint also holds the ``FitResult`` as JSON (``result.json``): the driver reads it from
there, so results reach the driver without passing large spectra through Tune's metrics.

Checkpoints live under ``<storage>/<experiment>/<fit_id>/checkpoint_NNNNNN/`` (one experiment
per survey run; ``CheckpointConfig(num_to_keep=1)``). Only the driver writes Parquet and
MLflow: ``run_trials`` forwards trial events to a ``FitEvents`` object in the driver process.
"""

from __future__ import annotations

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

import pyarrow.fs as pafs

from mflow.config import FitSpec
from mflow.fit import CurvePoint, FitResult, Trainer
from pipelines.spec import Fit, Resources

__all__ = [
    "FitEvents",
    "init_ray",
    "latest_checkpoints",
    "prune_checkpoints",
    "result_from_dict",
    "result_to_dict",
    "run_trials",
]

STATE_FILE = "state.pt"  # the trainer's state_dict (torch.save)
META_FILE = "meta.json"  # {"fit_id": ..., "step": ...}
RESULT_FILE = "result.json"  # the FitResult, in the last checkpoint only
TOP_EIGENVALUES = 10  # eigenvalues reported as metrics at each step

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
    """Inverse of ``result_to_dict``."""
    curve = tuple(
        CurvePoint(**{**p, "eigenvalues": tuple(p["eigenvalues"])}) for p in d["curve"]
    )
    return FitResult(**{**d, "eigenvalues": tuple(d["eigenvalues"]), "curve": curve})


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
    for i, value in enumerate(point.eigenvalues[:TOP_EIGENVALUES]):
        metrics[f"eig_{i}"] = value
    return metrics


def _report(
    trainer: Trainer, fit_id: str, metrics: dict[str, Any], result=None, checkpoint: bool = True
) -> None:
    from ray import tune

    if not checkpoint:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="mflow-ckpt-") as folder:
        trainer.save(Path(folder, STATE_FILE))
        Path(folder, META_FILE).write_text(json.dumps({"fit_id": fit_id, "step": trainer.step}))
        if result is not None:
            Path(folder, RESULT_FILE).write_text(json.dumps(result_to_dict(result)))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _restore(trainer: Trainer, checkpoint) -> None:
    with checkpoint.as_directory() as folder:
        trainer.restore(Path(folder, STATE_FILE))


def _trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one fit, checkpointed at every logged step."""
    import torch
    from ray import tune

    job = config["fit"]
    fit_id = job["fit_id"]
    torch.set_num_threads(max(1, int(job["threads"])))
    spec = FitSpec.from_dict(json.loads(job["spec"]))
    trainer = Trainer(spec)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        _restore(trainer, checkpoint)  # Tune restarted this trial: its state must load
    elif job.get("resume"):
        try:  # a checkpoint left by an earlier survey run; start afresh if it is unusable
            _restore(trainer, tune.Checkpoint(job["resume"]))
        except Exception:  # noqa: BLE001 - any unreadable checkpoint means: start afresh
            trainer = Trainer(spec, trainer.data)

    last_checkpoint = time.monotonic()

    def callback(point: CurvePoint, trainer: Trainer) -> None:
        nonlocal last_checkpoint
        due = time.monotonic() - last_checkpoint >= job["checkpoint_every_s"]
        _report(trainer, fit_id, _metrics(fit_id, point), checkpoint=due)
        if due:
            last_checkpoint = time.monotonic()

    result = trainer.run(callback)
    final = {"fit_id": fit_id, "step": result.steps, "final": True, "status": result.status}
    if result.id_estimate is not None:
        final["estimate"] = result.id_estimate
    _report(trainer, fit_id, final, result=result)


# -- the driver side -------------------------------------------------------------------------


class FitEvents:
    """What the driver hears about fits; override the methods it needs. Runs in the driver."""

    def started(self, fit_id: str) -> None:
        """A trial (re)started."""

    def progress(self, fit_id: str, metrics: Mapping[str, Any]) -> None:
        """A trial reported a logged step."""

    def retrying(self, fit_id: str, error: str, attempt: int) -> None:
        """A trial failed and Tune restarts it from its last checkpoint."""

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


def _read_result(trial) -> FitResult:
    checkpoint = trial.checkpoint
    if checkpoint is None:
        raise RuntimeError("the trial ended without a checkpoint")
    path = f"{checkpoint.path}/{RESULT_FILE}"
    with checkpoint.filesystem.open_input_stream(path) as f:
        return result_from_dict(json.loads(f.readall().decode()))


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
            self._call(self.events.started, _fit_id(trial))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if not result.get("final"):
                self._call(self.events.progress, _fit_id(trial), result)

        def on_trial_recover(self, iteration, trials, trial, **info):
            line, _ = _error_of(trial)
            self._call(self.events.retrying, _fit_id(trial), line, trial.num_failures)

        def on_trial_complete(self, iteration, trials, trial, **info):
            fit_id = _fit_id(trial)
            try:
                result = _read_result(trial)
            except Exception as exc:  # noqa: BLE001 - recorded as a failed fit
                self._call(self.events.failed, fit_id, f"no result: {exc}", "", trial.num_failures)
                return
            self._call(self.events.finished, fit_id, result, trial.num_failures)

        def on_trial_error(self, iteration, trials, trial, **info):
            line, detail = _error_of(trial)
            self._call(self.events.failed, _fit_id(trial), line, detail, trial.num_failures)

    return _Forward(events)


def _fit_id(trial) -> str:
    return trial.config["fit"]["fit_id"]


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


def _concurrency(resources: Resources) -> int:
    """The job's ``max_concurrent``, else as many trials as the cluster's CPUs (GPUs) hold."""
    import ray

    if resources.max_concurrent is not None:
        return resources.max_concurrent
    cluster = ray.cluster_resources()
    limit = int(cluster.get("CPU", 1) // resources.cpu)
    if resources.gpu > 0:
        limit = min(limit, int(cluster.get("GPU", 0) // resources.gpu))
    return max(1, limit)


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
        fits: the fits to run (one trial each).
        resources: CPUs, GPUs, concurrency and retries per trial.
        storage: Tune's ``storage_path`` (a local path or a URI Ray takes).
        experiment: the experiment folder under ``storage`` (one per survey run).
        events: told, in this process, when each trial starts, reports, retries and ends.
        resume: ``{fit_id: checkpoint}`` left by earlier runs, to continue from.
    """
    from ray import tune

    for key, value in _TUNE_ENV.items():
        os.environ.setdefault(key, value)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    resume = resume or {}
    threads = max(1, int(resources.cpu))
    configs = [
        {
            "fit_id": fit.fit_id,
            "spec": fit.spec.to_json(),
            "resume": resume.get(fit.fit_id),
            "threads": threads,
            "checkpoint_every_s": resources.checkpoint_every_s,
        }
        for fit in fits
    ]
    forward = _make_callback(events)
    tuner = tune.Tuner(
        tune.with_resources(_trial, {"cpu": resources.cpu, "gpu": resources.gpu}),
        param_space={"fit": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=_concurrency(resources),
            trial_name_creator=_fit_id,
            trial_dirname_creator=_fit_id,
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


def latest_checkpoints(
    fs: pafs.FileSystem, root: str, uri: str, fit_ids: Sequence[str]
) -> dict[str, str]:
    """``{fit_id: checkpoint}``: the checkpoint with the most steps that any earlier run left.

    ``root`` is the Tune storage folder on ``fs``; ``uri`` the same folder as Ray names it
    (equal for local paths), used to build the returned locations.
    """
    wanted = set(fit_ids)
    best: dict[str, tuple[int, str, str]] = {}
    for experiment in _list(fs, root):
        if experiment.type != pafs.FileType.Directory:
            continue
        for trial in _list(fs, experiment.path):
            if trial.base_name not in wanted or trial.type != pafs.FileType.Directory:
                continue
            for checkpoint in _list(fs, trial.path):
                if not checkpoint.base_name.startswith("checkpoint_"):
                    continue
                try:
                    with fs.open_input_stream(f"{checkpoint.path}/{META_FILE}") as f:
                        step = int(json.loads(f.readall().decode())["step"])
                except (OSError, ValueError, KeyError):
                    continue
                rank = (step, experiment.base_name, checkpoint.base_name)
                if trial.base_name not in best or rank > best[trial.base_name][:3]:
                    location = "/".join(
                        (uri.rstrip("/"), experiment.base_name, trial.base_name,
                         checkpoint.base_name)
                    )
                    best[trial.base_name] = (*rank, location)
    return {fit_id: entry[3] for fit_id, entry in best.items()}


def prune_checkpoints(fs: pafs.FileSystem, root: str, fit_ids: Sequence[str]) -> None:
    """Delete the trial folders of ``fit_ids`` (fits stored for good), then empty runs."""
    done = set(fit_ids)
    for experiment in _list(fs, root):
        if experiment.type != pafs.FileType.Directory:
            continue
        remaining = False
        for trial in _list(fs, experiment.path):
            if trial.type != pafs.FileType.Directory:
                continue
            if trial.base_name in done:
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
