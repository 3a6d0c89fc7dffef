"""A job file read: YAML loaded safely, ``--set`` overrides applied, every block validated
(``pipelines.job.schema``) and the grid parsed (``pipelines.job.grid``) into a ``Job``.

A job file (YAML) has the top-level keys ``name``, ``description`` (optional), ``data``,
``grid``, ``model``, ``prior``, ``train``, ``readout``, ``resources`` and ``analysis``. Every
error is a ``JobError`` whose message names the dotted path of the bad key or value.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipelines.job.errors import JobError, from_validation
from pipelines.job.grid import Axis, parse_grid
from pipelines.job.schema import SECTIONS, Analysis, JobFile, Resources, check_name, check_value

__all__ = ["Job", "apply_overrides", "load_job", "parse_job"]


@dataclass(frozen=True)
class Job:
    """A validated job: the base config, the grid axes and the resources.

    ``base`` holds only the fields the job sets (``{'train': {'steps': 500}}``); the rest
    are ``FitSpec``'s defaults. ``raw`` is the job as read, overrides applied.
    """

    name: str
    description: str | None
    base: dict[str, dict[str, Any]]
    axes: tuple[Axis, ...]
    resources: Resources
    raw: dict[str, Any]
    source: str | None = None
    analysis: Analysis = Analysis()

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)


def _set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    if parts[0] == "grid" and len(parts) > 1:
        parts = ["grid", ".".join(parts[1:])]
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise JobError(f"--set {path}: {'.'.join(parts[: i + 1])} is not a mapping")
        node = child
    node[parts[-1]] = value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with ``key.path=value`` overrides set (values parsed as YAML).

    ``grid.<axis>=[...]`` replaces a grid axis (its name may itself be dotted).

    Example:
        >>> apply_overrides({"train": {"steps": 5}}, ["train.steps=7", "train.lr=1e-3"])
        {'train': {'steps': 7, 'lr': '1e-3'}}
    """
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise JobError(f"--set: expected key.path=value, got {item!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise JobError(f"--set {key}: cannot parse {text!r} ({exc})") from None
        _set_path(out, key, value)
    return out


def parse_job(
    raw: Any, overrides: Sequence[str] = (), source: str | None = None
) -> Job:
    """Validate a job (as loaded from YAML) with ``--set`` overrides applied."""
    if not isinstance(raw, dict):
        raise JobError(f"{source or 'job'}: expected a mapping at the top, got {raw!r}")
    raw = apply_overrides(raw, overrides)
    try:
        top = JobFile.model_validate(raw)
    except ValidationError as exc:
        raise from_validation(exc) from None
    check_name(top.name)
    base: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        block = getattr(top, section)
        values = block.model_dump(exclude_unset=True) if block is not None else {}
        for key, value in values.items():
            check_value(f"{section}.{key}", value, f"{section}.{key}")
        base[section] = values
    axes = parse_grid(top.grid or {})
    gridded = {path: axis.name for axis in axes for path in axis.targets}
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in gridded:
            raise JobError(
                f"--set {key}: no effect, grid axis {gridded[key]!r} sets it; "
                f"override grid.{gridded[key]} instead"
            )
    if "data.dataset" not in gridded and "dataset" not in base["data"]:
        raise JobError("data.dataset: required (or a grid axis 'dataset')")
    resources = top.resources or Resources()
    _check_workers(resources)
    analysis = top.analysis or Analysis()
    for axis in analysis.group_by or []:
        if axis not in {a.name for a in axes}:
            raise JobError(
                f"analysis.group_by: {axis!r} is not a grid axis; axes: "
                f"{', '.join(a.name for a in axes) or 'none'}"
            )
    return Job(
        name=top.name,
        description=top.description,
        base=base,
        axes=axes,
        resources=resources,
        raw=raw,
        source=source,
        analysis=analysis,
    )


def _check_workers(resources: Resources) -> None:
    """A trial's process uses one GPU at most; more devices per fit are ``resources.workers``
    (data-parallel, ``pipelines.execution.parallel``), which train one fit per trial on whole
    GPUs."""
    if resources.gpu > 1:
        raise JobError(
            f"resources.gpu: {resources.gpu:g} asked for; a trial's process uses one GPU at "
            "most; to train a fit on several GPUs set resources.workers (e.g. workers: "
            f"{math.ceil(resources.gpu)} and gpu: 1, data-parallel with one GPU per worker)"
        )
    if resources.workers == 1:
        return
    if resources.pack != 1:
        raise JobError(
            f"resources.pack: {resources.pack!r} with resources.workers: {resources.workers}; a "
            "data-parallel trial trains one fit over its workers, so set resources.pack: 1 (or "
            "resources.workers: 1 to pack fits)"
        )
    if resources.gpu not in (0, 1):
        raise JobError(
            f"resources.gpu: {resources.gpu:g} with resources.workers: {resources.workers}; "
            "each data-parallel worker holds a whole GPU (NCCL runs one process per device), "
            "so use resources.gpu: 1 (or 0 for CPU workers)"
        )


def load_job(path: str | Path, overrides: Sequence[str] = ()) -> Job:
    """Read a job file (``yaml.safe_load``) and validate it; errors name the file or key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise JobError(
            f"{path}: not a YAML text file (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start} is not UTF-8)"
        ) from None
    except OSError as exc:
        raise JobError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise JobError(f"{path}: invalid YAML{at}: {problem}") from None
    return parse_job(raw, overrides, source=str(path))
