"""Trial checkpoints: the files a checkpoint holds (the trainer's state, its fits' results
and artifacts), written and read back, and the checkpoint folders earlier runs left.

Checkpoints live under ``<storage>/<experiment>/<trial>/checkpoint_NNNNNN/`` (one experiment
per survey run; ``CheckpointConfig(num_to_keep=1)``); the trial folder of a single fit is named
by its fit id, that of a pack ``pack-<K>-<hash>`` (``packing.pack_id``), and each checkpoint's
``meta.json`` lists its fit ids. Tune's trials (``pipelines.execution.trial``) and Ray Train's
data-parallel workers (``pipelines.execution.parallel``) write the same files.

Resume never changes a fit silently (``resume``): where an earlier run's checkpoint cannot be
restored as it was taken (its pack was planned anew, it lacks a fit's state, or its file does
not load), the fit's note says so, and it trains from step 0 only when the survey run was
given ``RESTART_FLAG``; otherwise it is not trained, and its error names the flag.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from mflow.checkpoint import RESTART_FLAG, error_line
from mflow.fit import FitResult
from pipelines.results.store import Store

__all__ = [
    "ARTIFACTS_FILE",
    "META_FILE",
    "PACK_PREFIX",
    "RESTART_FLAG",
    "RESULT_FILE",
    "STATE_FILE",
    "Resumed",
    "latest_checkpoints",
    "prune_checkpoints",
    "read_artifacts",
    "read_json",
    "read_note",
    "read_results",
    "restore",
    "result_from_dict",
    "resume",
    "result_to_dict",
    "write_checkpoint",
]

STATE_FILE = "state.pt"  # the trainer's state_dict (torch.save)
META_FILE = "meta.json"  # {"fit_ids": [...], "step": ..., "final": ..., "note": ...}
RESULT_FILE = "result.json"  # {fit_id: FitResult}, in the last checkpoint only
ARTIFACTS_FILE = "artifacts.npz"  # {"<fit_id>/<name>": array}, in the last checkpoint only
PACK_PREFIX = "pack-"  # trial folders of packs (see pipelines.execution.packing.pack_id)


def result_to_dict(result: FitResult) -> dict[str, Any]:
    """A JSON-able dict of a ``FitResult``."""
    return asdict(result)


def result_from_dict(d: Mapping[str, Any]) -> FitResult:
    """Inverse of ``result_to_dict`` (``FitResult.from_dict``)."""
    return FitResult.from_dict(d)


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


def write_checkpoint(
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


def restore(trainer, checkpoint) -> None:
    """Load a checkpoint's trainer state (``state.pt``) into ``trainer``."""
    import torch

    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder, STATE_FILE), map_location=trainer.device,
                           weights_only=True)
    trainer.load_state_dict(state)


@dataclass(frozen=True)
class Resumed:
    """A trial's trainer as ``resume`` left it."""

    trainer: Any
    note: str | None = None  # why the earlier run's checkpoint was not continued from
    refused: str | None = None  # set: the trainer must not train (the error to record)


def resume(trainer, job: Mapping[str, Any], fresh: Callable[[], Any], open_checkpoint
           ) -> Resumed:
    """``trainer`` continued from the checkpoint an earlier survey run left for the trial's
    fits (``job["resume"]``, opened by ``open_checkpoint``, a Ray ``Checkpoint`` class).

    When that checkpoint cannot be restored as it was taken (``job["unresumable"]``: the
    driver found the trial's pack planned anew; or its state does not load into ``trainer``),
    the result's note says why, and: with ``job["restart_unresumable"]`` (``RESTART_FLAG``)
    the trainer is ``fresh()``, to train from step 0; without, ``refused`` is the error to
    record instead of training.
    """
    why = job.get("unresumable")
    if why is None and job.get("resume"):
        try:
            restore(trainer, open_checkpoint(job["resume"]))
        except Exception as exc:  # noqa: BLE001 - whatever fails, the state was not restored
            detail = error_line(exc)
            why = (f"could not continue from the checkpoint an earlier run left at "
                   f"{job['resume']} ({detail})")
    if why is None:
        return Resumed(trainer)
    if job.get("restart_unresumable"):
        return Resumed(fresh(), note=f"{why}; trained from step 0 ({RESTART_FLAG})")
    return Resumed(trainer, note=why, refused=(
        f"not trained: its earlier checkpoint cannot be restored as it was taken (see note); "
        f"`survey run {RESTART_FLAG}` trains it from step 0"))


def read_json(checkpoint, name: str) -> Any:
    """A JSON file of a checkpoint (a Ray ``Checkpoint``, on any filesystem)."""
    with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{name}") as f:
        return json.loads(f.readall().decode())


def read_results(checkpoint) -> dict[str, FitResult]:
    """``{fit_id: FitResult}`` from a trial's final checkpoint."""
    if checkpoint is None:
        raise RuntimeError("the trial ended without a checkpoint")
    return {k: result_from_dict(d) for k, d in read_json(checkpoint, RESULT_FILE).items()}


def read_note(checkpoint) -> str | None:
    """The note a trial's final checkpoint carries (see ``FitEvents.noted``), if any."""
    try:
        return read_json(checkpoint, META_FILE).get("note")
    except (OSError, ValueError, AttributeError):
        return None


def read_artifacts(checkpoint) -> dict[str, dict[str, np.ndarray]]:
    """``{fit_id: {name: array}}`` from a trial's final checkpoint; ``{}`` when it has none."""
    try:
        with checkpoint.filesystem.open_input_file(f"{checkpoint.path}/{ARTIFACTS_FILE}") as f:
            data = f.read()
    except (OSError, FileNotFoundError):
        return {}
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return Store.split_artifacts(npz)


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
