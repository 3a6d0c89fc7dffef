"""The grid: axes parsed from a job's ``grid`` block, and their product expanded into fits.

An axis is named

- by a short name: ``class`` (``data.classes = (c,)``), ``noise_floor`` (``train.noise_floor``),
  ``seed`` (both ``train.seed`` and ``data.seed``), ``n`` (``data.n``), ``dataset``
  (``data.dataset``);
- by a dotted path to any field: ``train.lr``, ``data.path``, ``model.volume_preserving``;
- by any other name, when its values are mappings of dotted paths (or short names) to values:
  a *zipped* axis, whose every value sets several fields together, e.g. ::

      variant:
        - {label: manifold, prior.kind: manifold, model.volume_preserving: true}
        - {label: baseline, prior.kind: standard, model.volume_preserving: false}

  (``label`` is optional and names the value in tables.)

Expansion (``expand``) is a pure generator; ``plan`` lists it and refuses duplicates.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mflow.config import FitSpec, check_spec
from mflow.datasets.registry import with_default_n
from pipelines.job.errors import JobError
from pipelines.job.identity import fit_id
from pipelines.job.schema import FIELD_TYPES, check_value

if TYPE_CHECKING:
    from pipelines.job.jobfile import Job

__all__ = ["SHORT_AXES", "Axis", "Fit", "count", "expand", "parse_grid", "plan"]

# Short axis names and the fields each sets.
SHORT_AXES: dict[str, tuple[str, ...]] = {
    "class": ("data.classes",),
    "dataset": ("data.dataset",),
    "n": ("data.n",),
    "noise_floor": ("train.noise_floor",),
    "seed": ("train.seed", "data.seed"),
}

_LABEL = "label"


@dataclass(frozen=True)
class Axis:
    """One grid axis: its name and, per value, a label and the fields that value sets."""

    name: str
    labels: tuple[Any, ...]
    assignments: tuple[dict[str, Any], ...]  # per value: {'train.seed': 0, 'data.seed': 0}

    @property
    def targets(self) -> frozenset[str]:
        return frozenset(path for a in self.assignments for path in a)


@dataclass(frozen=True)
class Fit:
    """One fit of a survey: its id, its resolved config and where it sits in the grid."""

    fit_id: str
    spec: FitSpec
    axes: dict[str, Any]  # axis name -> label of this fit's value


def _paths_of(key: str, where: str) -> tuple[str, ...]:
    if key in SHORT_AXES:
        return SHORT_AXES[key]
    if key in FIELD_TYPES:
        return (key,)
    raise JobError(f"{where}: unknown field {key!r}")


def _parse_axis(name: str, values: Any) -> Axis:
    where = f"grid.{name}"
    if not isinstance(values, list):
        raise JobError(f"{where}: expected a list of values, got {values!r}")
    if not values:
        raise JobError(f"{where}: empty axis (no value, so no fit)")
    if name in SHORT_AXES or name in FIELD_TYPES:
        paths = _paths_of(name, where)
        labels, assignments = [], []
        for i, value in enumerate(values):
            checked = check_value(paths[0], value, f"{where}[{i}]")
            labels.append(list(value) if isinstance(value, list) else value)
            assignments.append({p: checked for p in paths})
        return Axis(name, tuple(labels), tuple(assignments))
    if "." in name:
        raise JobError(f"{where}: unknown field {name!r}")
    labels, assignments = [], []
    for i, value in enumerate(values):
        if not isinstance(value, dict) or not value:
            raise JobError(
                f"{where}[{i}]: {name!r} is not a field, so its values must be mappings of "
                f"dotted paths to values (a zipped axis), got {value!r}"
            )
        assignment: dict[str, Any] = {}
        for key, item in value.items():
            if key == _LABEL:
                continue
            key_where = f"{where}[{i}].{key}"
            for path in _paths_of(str(key), key_where):
                if path in assignment:
                    raise JobError(f"{key_where}: {path} is set twice")
                assignment[path] = check_value(path, item, key_where)
        if not assignment:
            raise JobError(f"{where}[{i}]: sets no field")
        label = value.get(_LABEL)
        if label is None:
            label = " ".join(f"{k}={v}" for k, v in value.items())
        labels.append(label)
        assignments.append(assignment)
    if len(set(map(str, labels))) != len(labels):
        raise JobError(f"{where}: two values have the same label")
    return Axis(name, tuple(labels), tuple(assignments))


def parse_grid(grid: Mapping[str, Any]) -> tuple[Axis, ...]:
    axes = tuple(_parse_axis(str(name), values) for name, values in grid.items())
    owner: dict[str, str] = {}
    for axis in axes:
        for path in sorted(axis.targets):
            if path in owner:
                raise JobError(
                    f"grid.{axis.name}: {path} is already set by grid axis {owner[path]!r}"
                )
            owner[path] = axis.name
    return axes


def count(job: Job) -> int:
    """The number of fits the grid expands to (the product of the axis lengths)."""
    return math.prod(len(axis.labels) for axis in job.axes)


def expand(job: Job) -> Iterator[Fit]:
    """Yield the fits of ``job``, one per point of the grid, in grid order. Pure."""
    for point in itertools.product(*(range(len(axis.labels)) for axis in job.axes)):
        sections = {section: dict(values) for section, values in job.base.items()}
        labels = {}
        for axis, i in zip(job.axes, point, strict=True):
            for path, value in axis.assignments[i].items():
                section, key = path.split(".", 1)
                sections[section][key] = value
            labels[axis.name] = axis.labels[i]
        spec = FitSpec.from_dict(sections)
        # data.n left out is spelled out where it stands for a number (generated data): the
        # rows, the records and the tracking see the n the fit draws.
        spec = dataclasses.replace(spec, data=with_default_n(spec.data))
        yield Fit(fit_id(spec), spec, labels)


def plan(job: Job) -> list[Fit]:
    """All fits of ``job``; refuses an empty grid, two grid points with one config, and
    settings ``mflow.config.check_spec`` refuses (a field out of its range, a flow without
    couplings)."""
    fits, seen = [], {}
    for fit in expand(job):
        try:
            check_spec(fit.spec)
        except ValueError as exc:
            where = f" (grid point {fit.axes})" if fit.axes else ""
            raise JobError(f"{exc}{where}") from None
        if fit.fit_id in seen:
            raise JobError(
                f"grid: {seen[fit.fit_id]} and {fit.axes} give the same config ({fit.fit_id})"
            )
        seen[fit.fit_id] = fit.axes
        fits.append(fit)
    if not fits:
        raise JobError("grid: expands to no fit")
    return fits
