"""The Ray Tune adapter: ``run_trials`` runs each pack of fits as one Tune trial (the trial
itself: ``pipelines.execution.trial``), and forwards Tune's trial events, one per fit, to a
``FitEvents`` object in the driver process.

``run_trials`` cuts the fits into packs (``pipelines.execution.sizing.plan_packs``;
``resources.pack`` fits at most, ``auto`` sized from the model and the device). A pack of one
fit trains with ``mflow.fit.Trainer``; a larger one with ``mflow.pack.PackTrainer``, which
trains its fits as one vectorised ensemble while each keeps its own data order, curve and
result. A fit whose final checkpoint an earlier run left (its driver stopped before recording
it) is recorded from that checkpoint without training again.

With ``resources.workers > 1`` a trial trains its one fit data-parallel: it starts a Ray Train
run of that many workers and hands its final checkpoint to Tune
(``pipelines.execution.parallel``).

A trial that Ray's memory monitor kills fails like one whose worker died: Tune restarts it
up to ``resources.retries`` times, then the fit fails, its error naming the memory monitor
(``pipelines.execution.memory``).

Trials reuse their Ray actors (``reuse_actors``): a new trial does not start a worker process
and import torch again, which costs seconds per trial on a small machine. Only the driver
writes Parquet and MLflow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mflow.fit import FitResult
from pipelines.execution import packing
from pipelines.execution.checkpoints import (
    META_FILE,
    read_artifacts,
    read_json,
    read_note,
    read_results,
)
from pipelines.execution.cluster import concurrency
from pipelines.execution.sizing import plan_packs
from pipelines.execution.trial import train_trial
from pipelines.job import Fit, Resources

__all__ = ["FitEvents", "run_trials"]

_TUNE_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}
_QUIET_LOGGERS = ("ray.tune", "ray.train", "ray.air")


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
        an earlier run's checkpoint), just before its ``finished`` or ``failed``."""

    def finished(self, fit_id: str, result: FitResult, retries: int) -> None:
        """A fit ended with a result (status ok or diverged)."""

    def failed(self, fit_id: str, error: str, detail: str, retries: int) -> None:
        """A fit failed after its retries; ``error`` is one line, ``detail`` the traceback."""


def _error_of(trial) -> tuple[str, str]:
    """One line and the full text of a trial's last error (a kill by Ray's memory monitor
    says so: ``pipelines.execution.memory``).

    Tune writes the error files in the driver's local trial folder first (they reach the
    storage folder later), so they are read from there.
    """
    from pipelines.execution import memory

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
            line = memory.describe(cause) or (
                f"{type(cause).__name__}: {cause}".strip().splitlines()[0])
        except Exception:  # noqa: BLE001 - fall back to the text of the error file
            line = ""
    if not line:
        lines = [x for x in detail.strip().splitlines() if x.strip()]
        line = memory.describe(detail) or (lines[-1] if lines else "the trial failed")
    return line[:2000], detail


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
            refused = (trial.last_result or {}).get("refused")
            if refused:  # not trained: an earlier run's checkpoint could not be restored
                note = trial.last_result.get("note")
                for fit_id in _fit_ids(trial):
                    if note:
                        self._call(self.events.noted, fit_id, note)
                    self._call(self.events.failed, fit_id, refused, "", trial.num_failures)
                return
            try:
                results = read_results(trial.checkpoint)
            except Exception as exc:  # noqa: BLE001 - recorded as failed fits
                results, arrays, error = {}, {}, f"no result: {exc}"
            else:
                arrays = read_artifacts(trial.checkpoint)
                error = "no result: the pack's final checkpoint lacks it"
            note = read_note(trial.checkpoint) if results else None
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
            restarts = max(0, trial.num_failures - 1)  # the last failure was not restarted
            for fit_id in _fit_ids(trial):
                self._call(self.events.failed, fit_id, line, detail, restarts)

    return _Forward(events)


@contextlib.contextmanager
def _sigint_restored() -> Iterator[None]:
    """Put back the SIGINT handler Tune replaces: Tune restores it only on a first Ctrl-C, so
    a Ctrl-C after Tune ended (while the driver writes the last fits) would be swallowed."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)


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


def _final_results(resume: Mapping[str, str], wanted: set[str]) -> dict[str, FitResult]:
    """Results of ``wanted`` fits held by the final checkpoints that earlier runs left."""
    from ray import tune

    out: dict[str, FitResult] = {}
    for location in sorted({resume[k] for k in wanted if k in resume}):
        try:
            checkpoint = tune.Checkpoint(location)
            if not read_json(checkpoint, META_FILE).get("final"):
                continue
            results = read_results(checkpoint)
        except Exception:  # noqa: BLE001 - an unreadable checkpoint: its trial will cope
            continue
        out.update(
            (k, r) for k, r in results.items() if k in wanted and resume.get(k) == location
        )
    return out


def _layout_change(ids: Sequence[str], resume: Mapping[str, str]) -> str | None:
    """Why the fits ``ids`` of one pack cannot continue from the checkpoints earlier runs
    left: they were taken by other packs (some of these fits have one, others another or
    none); ``None`` when they share one checkpoint or none has any."""
    locations = {resume.get(fit_id) for fit_id in ids}
    if len(locations) == 1:
        return None
    held = sorted(location for location in locations if location is not None)
    with_one = sum(fit_id in resume for fit_id in ids)
    return (f"could not continue from the checkpoint(s) an earlier run left at "
            f"{', '.join(held)}: the pack was planned anew ({with_one} of its {len(ids)} fits "
            f"have a checkpoint, from {len(held)} earlier pack(s)), so their state cannot be "
            "restored as it was taken")


def run_trials(
    fits: Sequence[Fit],
    resources: Resources,
    storage: str,
    experiment: str,
    events: FitEvents,
    resume: Mapping[str, str] | None = None,
    restart_unresumable: bool = False,
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
            ended ok, and trains afresh otherwise (a retry). A fit whose checkpoint cannot be
            restored as it was taken (``checkpoints.resume``) fails, its note saying why.
        restart_unresumable: such fits train from step 0 instead (``RESTART_FLAG``).
    """
    from ray import tune

    from pipelines.execution import memory

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
        changed = _layout_change(ids, resume)
        configs.append(
            {
                "trial_id": ids[0] if len(ids) == 1 else packing.pack_id(ids),
                "fits": [{"fit_id": fit.fit_id, "spec": fit.spec.to_json()} for fit in pack],
                "resume": None if changed else resume.get(ids[0]),
                "unresumable": changed,
                "restart_unresumable": restart_unresumable,
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
        trainable = tune.with_resources(train_trial, {"cpu": resources.cpu, "gpu": resources.gpu})
    tuner = tune.Tuner(
        trainable,
        param_space={"fit": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=concurrency(resources),
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
    with memory.memory_kills_fail_trials(), _sigint_restored():
        tuner.fit()
    if forward.errors:
        raise forward.errors[0]
