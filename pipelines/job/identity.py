"""A fit's identity: ``fit_id``, a stable, filename-safe name derived from what decides the
fit's result (the old ``legacy_fit_id`` kept only to find fits stored under it)."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from mflow.config import FitSpec, canonical_json
from mflow.datasets import DATA_VERSIONS
from mflow.datasets.registry import with_default_n
from pipelines.job.errors import JobError

__all__ = ["IMPLIED_DEFAULTS", "NOT_IN_FIT_ID", "data_checksum", "fit_id", "legacy_fit_id"]

# Fields that say where the data lie, where a fit runs or how often it is logged, not what it
# computes: ``fit_id`` leaves them out (``train.log_every`` only while early stopping is off).
NOT_IN_FIT_ID = ("data.root", "train.device", "train.log_every")


def _implied_defaults() -> dict[str, Any]:
    """``{dotted path: value}`` of the optional fields whose ``None`` the library reads as a
    value: set to that value, a field is the same fit as left out (``fit_id`` drops it)."""
    from mflow import settle, training

    return {
        "train.prior_update": "adam",  # mflow.training.prior_update
        "train.prior_every": training.PRIOR_EVERY,
        "train.prior_ema": training.PRIOR_EMA,
        "readout.settle_window": settle.SETTLE_WINDOW,
        "readout.settle_drift": settle.SETTLE_DRIFT,
        "readout.settle_margin": settle.SETTLE_MARGIN,
    }


IMPLIED_DEFAULTS = _implied_defaults()


def _digest(spec: FitSpec, config: dict[str, Any]) -> str:
    """``<dataset>-<hash>`` of ``config``, with the dataset's loader version above 1."""
    version = DATA_VERSIONS.get(spec.data.dataset, 1)
    if version > 1:
        config["data_version"] = version
    canonical = json.dumps(config, sort_keys=True)
    return f"{spec.data.dataset}-{hashlib.sha256(canonical.encode()).hexdigest()[:10]}"


@functools.cache
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 of a file's bytes, remembered per size and modification time."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_sha256(folder: Path) -> str:
    """sha256 of an image folder's images: each one's path in the folder (its class folder
    included) and the sha256 of its bytes."""
    from mflow.datasets.folder import folder_files

    try:
        loose, classes = folder_files(folder)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    digest = hashlib.sha256()
    for path in loose + [p for files in classes.values() for p in files]:
        stat = path.stat()
        content = _file_sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)
        digest.update(f"{path.relative_to(folder).as_posix()}\0{content}\n".encode())
    return digest.hexdigest()


def data_checksum(path: str | Path) -> str:
    """sha256 of the content of a user's data file or image folder (``data.path``);
    ``JobError`` naming the file when it cannot be read."""
    path = Path(path).expanduser()
    try:
        if path.is_dir():
            return _folder_sha256(path)
        if not path.is_file():
            raise JobError(f"{path}: no such file (data.path)")
        stat = path.stat()
        return _file_sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)
    except OSError as exc:
        raise JobError(f"{path}: cannot read ({exc.strerror}) (data.path)") from None


def _n_for_id(spec: FitSpec) -> int | None:
    """``data.n`` as the fit id hashes it: a generated dataset's default spelled out (its ids
    from before ``n`` could be left out); None for a user's file or folder with ``n`` left out
    (every row but a held-out slice: the loader's version in the id tells it from the fits of
    before, which trained on every row or on ``DEFAULT_POINTS`` of them)."""
    return with_default_n(spec.data).n


def _config(spec: FitSpec) -> dict[str, Any]:
    """``spec`` as the ids hash it: its fields not None, ``data.n`` as ``_n_for_id`` says."""
    config = json.loads(canonical_json(spec))
    n = _n_for_id(spec)
    if n is not None:
        config["data"]["n"] = n
    return config


def fit_id(spec: FitSpec) -> str:
    """A stable, filename-safe id: the dataset name and a hash of what decides the fit's result.

    The hash covers the canonical config less the fields in ``NOT_IN_FIT_ID`` (where the data
    lie, the device, the logging interval: moving the MNIST folder or logging more often keeps
    the ids), with a user's data file (``data.path``) named by its content's checksum rather
    than its path; ``train.log_every`` counts when early stopping is on, as a fit stops only at
    a logged step. Fields left at ``None`` do not enter the hash, so adding a new optional field
    (default ``None``) to the config keeps the ids, and the stored fits, of every existing
    survey; nor do those set to the value their ``None`` stands for (``IMPLIED_DEFAULTS``:
    ``train.prior_update: adam`` is the fit that leaves it out). A changed default value does
    change the ids, as it should: those fits are different fits. So does a dataset's loader
    version above 1 (``mflow.datasets.DATA_VERSIONS``): the same config then loads other
    points. ``data.n`` left out hashes as the number it stands for (``_n_for_id``). Fits stored
    under the ids of before
    (``legacy_fit_id``) are taken over by ``pipelines.results.store.Store.adopt_legacy``.

    Example:
        >>> fit_id(FitSpec()) == fit_id(FitSpec.from_dict(FitSpec().to_dict()))
        True
        >>> fit_id(FitSpec()).startswith("sine-")
        True
        >>> fit_id(FitSpec()) == fit_id(FitSpec().replace(train={"log_every": 7}))
        True
    """
    config = _config(spec)
    for path, default in IMPLIED_DEFAULTS.items():
        section, key = path.split(".")
        value = config[section].get(key)
        if value is not None and type(value) is not bool and value == default:
            config[section].pop(key)  # the value its None stands for: as if left out
    for path in NOT_IN_FIT_ID:
        if path == "train.log_every" and spec.train.early_stop_window > 0:
            continue
        section, key = path.split(".")
        config[section].pop(key, None)
    if spec.data.path is not None:
        config["data"]["path_sha256"] = data_checksum(config["data"].pop("path"))
    return _digest(spec, config)


def legacy_fit_id(spec: FitSpec) -> str:
    """The id ``spec`` had before ``fit_id`` left out ``NOT_IN_FIT_ID`` and hashed the data
    file's content: a hash of every field not ``None``. Only to find fits stored then.

    Example:
        >>> legacy_fit_id(FitSpec()) == legacy_fit_id(FitSpec().replace(train={"log_every": 7}))
        False
    """
    return _digest(spec, _config(spec))

