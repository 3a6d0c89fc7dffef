"""Survey specs: load a job file, validate it strictly, and expand its grid into fits.

A job file (YAML) has the top-level keys ``name``, ``description`` (optional), ``data``,
``grid``, ``model``, ``prior``, ``train``, ``readout`` and ``resources``. The five config
blocks map one to one onto the sections of ``mflow.config.FitSpec``: their keys are the
fields of those dataclasses, checked with strict types (a float field also takes a string
such as ``1e-3``, which YAML 1.1 reads as a string). ``grid`` maps axis names to lists of
values; the product of the axes is the set of fits. An axis is named

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

Every error is a ``JobError`` whose message names the dotted path of the bad key or value.
Expansion (``expand``) is a pure generator; ``plan`` lists it and refuses duplicates.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    create_model,
)
from pydantic_core import PydanticCustomError

from mflow.config import DataSpec, FitSpec
from mflow.datasets import DATA_VERSIONS, DATASETS
from mflow.datasets.mnist import FILES as MNIST_FILES
from mflow.fit import PRIOR_UPDATES, check_train
from mflow.flow import FLOW_KINDS
from mflow.model import PRIORS
from mflow.readout import RULES

__all__ = [
    "BOUNDS",
    "NOT_IN_FIT_ID",
    "SECTIONS",
    "SHORT_AXES",
    "Axis",
    "Fit",
    "Job",
    "JobError",
    "Resources",
    "apply_overrides",
    "check_data",
    "check_name",
    "count",
    "data_checksum",
    "expand",
    "fit_id",
    "legacy_fit_id",
    "load_job",
    "parse_job",
    "plan",
]

SECTIONS = ("data", "model", "prior", "train", "readout")

# Short axis names and the fields each sets.
SHORT_AXES: dict[str, tuple[str, ...]] = {
    "class": ("data.classes",),
    "dataset": ("data.dataset",),
    "n": ("data.n",),
    "noise_floor": ("train.noise_floor",),
    "seed": ("train.seed", "data.seed"),
}

# String fields with a closed set of values, taken from mflow and checked here so that a typo
# fails before any fit starts; the training block is also checked by mflow's own
# ``check_train`` (see ``plan``).
CHOICES: dict[str, tuple[str, ...]] = {
    "data.split": tuple(sorted(MNIST_FILES)),
    "model.kind": FLOW_KINDS,
    "prior.kind": tuple(sorted(PRIORS)),
    "readout.rule": tuple(sorted(RULES)),
    "train.prior_update": PRIOR_UPDATES,
}

# Lower bounds of numeric fields: a value outside cannot train, or means nothing (a zero noise
# floor or spread variance makes the readout's floor vanish). Every float must also be finite.
BOUNDS: dict[str, tuple[str, float]] = {
    "data.n": (">=", 1),
    "data.latent_dim": (">=", 1),
    "data.vae_steps": (">=", 1),
    "prior.sigma2": (">", 0),
    "prior.entropy_weight": (">=", 0),
    "train.steps": (">=", 0),
    "train.batch_size": (">=", 1),
    "train.log_every": (">=", 1),
    "train.lr": (">", 0),
    "train.lr_prior": (">", 0),
    "train.lr_prior_dim": (">=", 1),
    "train.lr_decay": (">", 0),
    "train.lr_decay_every": (">=", 1),
    "train.weight_decay": (">=", 0),
    "train.weight_decay_prior": (">=", 0),
    "train.noise_start": (">", 0),  # 0: the initial prior A A^T = cov(g(x)) may be singular
    "train.noise_floor": (">", 0),
    "train.noise_decay": (">", 0),
    "train.noise_decay_every": (">=", 1),
    "train.grad_clip": (">", 0),
    "train.early_stop_window": (">=", 0),
    "train.early_stop_tol": (">=", 0),
    "train.prior_every": (">=", 1),
    "train.prior_ema": (">=", 0),  # and < 1: mflow.fit.check_train
    "readout.threshold": (">", 0),
    "readout.settle_window": (">=", 1),
    "readout.settle_drift": (">=", 1),
    "readout.settle_margin": (">", 0),
}

# Fields that say where the data lie, where a fit runs or how often it is logged, not what it
# computes: ``fit_id`` leaves them out (``train.log_every`` only while early stopping is off).
NOT_IN_FIT_ID = ("data.root", "train.device", "train.log_every")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LABEL = "label"


class JobError(ValueError):
    """A job file, an override or a grid that cannot be run; the message names the culprit."""


# -- field types ---------------------------------------------------------------------------


def _lax_float(value: Any) -> Any:
    """Let a string such as ``'1e-3'`` (YAML 1.1 reads it as a string) through as a float."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _as_tuple(value: Any) -> Any:
    """A list becomes a tuple; a single integer becomes a 1-tuple."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    return value


LaxFloat = Annotated[StrictFloat, BeforeValidator(_lax_float)]


def _annotation(tp: Any) -> Any:
    """The strict pydantic type for a dataclass field's type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported field type {tp}")
        return _annotation(args[0]) | None
    if origin is tuple:
        item = typing.get_args(tp)[0]
        return Annotated[tuple[_annotation(item), ...], BeforeValidator(_as_tuple)]
    simple = {bool: StrictBool, int: StrictInt, float: LaxFloat, str: StrictStr}
    if tp in simple:
        return simple[tp]
    raise TypeError(f"unsupported field type {tp}")


def _section_classes() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(FitSpec)}


def _field_types() -> dict[str, Any]:
    """``{'train.lr': <pydantic type>, ...}`` for every field of every section."""
    out = {}
    for section, cls in _section_classes().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out[f"{section}.{f.name}"] = _annotation(hints[f.name])
    return out


FIELD_TYPES = _field_types()
_ADAPTERS = {path: TypeAdapter(tp) for path, tp in FIELD_TYPES.items()}


def _section_model(section: str) -> type[BaseModel]:
    fields = {
        path.split(".", 1)[1]: (tp, None)
        for path, tp in FIELD_TYPES.items()
        if path.startswith(section + ".")
    }
    return create_model(
        f"{section.title()}Block", __config__=ConfigDict(extra="forbid"), **fields
    )


def _pack(value: Any) -> Any:
    """``resources.pack``: an integer >= 1, or ``'auto'``."""
    if value == "auto" or (type(value) is int and value >= 1):
        return value
    raise PydanticCustomError(
        "pack", "expected an integer >= 1 or 'auto', got {got}", {"got": repr(value)}
    )


Pack = Annotated[int | str, PlainValidator(_pack)]


class Resources(BaseModel):
    """What one trial asks of the cluster, and how often a failed trial is retried."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: LaxFloat = Field(1.0, gt=0)  # CPUs per trial (per worker when workers > 1)
    gpu: LaxFloat = Field(0.0, ge=0)  # GPUs per trial; fractions share a GPU (per worker: 0 or 1)
    # Processes per fit: > 1 trains each fit data-parallel over this many Ray Train workers,
    # each holding cpu and gpu (pipelines.execution.parallel); needs pack 1
    workers: StrictInt = Field(1, ge=1)
    # Fits per trial: at most this many same-shaped fits train as one vectorised ensemble; 1
    # runs each fit alone; auto sizes packs from the model and the device
    # (pipelines.execution.packing).
    pack: Pack = 1
    # Trials at once; None: as many as the cluster holds, nodes that join later included
    max_concurrent: StrictInt | None = Field(None, ge=1)
    retries: StrictInt = Field(2, ge=0)  # restarts of a failed trial (Tune's max_failures)
    checkpoint_every_s: LaxFloat = Field(30.0, ge=0)  # min seconds between checkpoints; 0: all


class Analysis(BaseModel):
    """How ``survey run``, ``analyze`` and ``report`` summarise the fits (their flags win)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group_by: list[StrictStr] | None = None  # grid axes to group by; None: all but the seed

    def options(self) -> dict[str, Any]:
        """Keyword arguments of ``pipelines.analysis.summary.summarize``."""
        return {"group_by": self.group_by}


_BLOCKS = {section: _section_model(section) for section in SECTIONS}
_TOP = create_model(
    "JobFile",
    __config__=ConfigDict(extra="forbid"),
    name=(StrictStr, ...),
    description=(StrictStr | None, None),
    grid=(dict[StrictStr, Any] | None, None),
    resources=(Resources | None, None),
    analysis=(Analysis | None, None),
    **{section: (model | None, None) for section, model in _BLOCKS.items()},
)


# -- error messages ------------------------------------------------------------------------


def _dotted(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not any(c in part for c in "[]()"):
            out += f".{part}" if out else part
    return out


_EXPECTED = (
    ("int", "an integer"),
    ("float", "a number"),
    ("bool", "true or false"),
    ("string", "a string"),
    ("tuple", "a list"),
    ("list", "a list"),
    ("dict", "a mapping"),
    ("model", "a mapping"),
)


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(error.get("ctx", {}).values()), "?")
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        return f"must be {bounds[kind]} {limit}, got {error['input']!r}"
    if kind.endswith(("_type", "_parsing")):
        for prefix, what in _EXPECTED:
            if kind.startswith(prefix):
                return f"expected {what}, got {error['input']!r}"
    return error["msg"]


def _from_validation(exc: ValidationError, prefix: str = "") -> JobError:
    lines = []
    for error in exc.errors():
        path = _dotted(error["loc"])
        if prefix and path and not path.startswith("["):
            path = f"{prefix}.{path}"
        elif prefix:
            path = prefix + path
        lines.append(f"{path or '(job)'}: {_message(error)}")
    return JobError("; ".join(lines))


# -- the job -------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Fit:
    """One fit of a survey: its id, its resolved config and where it sits in the grid."""

    fit_id: str
    spec: FitSpec
    axes: dict[str, Any]  # axis name -> label of this fit's value


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


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


def data_checksum(path: str | Path) -> str:
    """sha256 of the content of a user's data file (``data.path``); ``JobError`` naming the
    file when it cannot be read."""
    path = Path(path).expanduser()
    try:
        if not path.is_file():
            raise JobError(f"{path}: no such file (data.path)")
        stat = path.stat()
        return _file_sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)
    except OSError as exc:
        raise JobError(f"{path}: cannot read ({exc.strerror}) (data.path)") from None


def fit_id(spec: FitSpec) -> str:
    """A stable, filename-safe id: the dataset name and a hash of what decides the fit's result.

    The hash covers the canonical config less the fields in ``NOT_IN_FIT_ID`` (where the data
    lie, the device, the logging interval: moving the MNIST folder or logging more often keeps
    the ids), with a user's data file (``data.path``) named by its content's checksum rather
    than its path; ``train.log_every`` counts when early stopping is on, as a fit stops only at
    a logged step. Fields left at ``None`` do not enter the hash, so adding a new optional field
    (default ``None``) to the config keeps the ids, and the stored fits, of every existing
    survey. A changed default value does change the ids, as it should: those fits are different
    fits. So does a dataset's loader version above 1 (``mflow.datasets.DATA_VERSIONS``): the
    same config then loads other points. Fits stored under the ids of before
    (``legacy_fit_id``) are taken over by ``pipelines.results.store.Store.adopt_legacy``.

    Example:
        >>> fit_id(FitSpec()) == fit_id(FitSpec.from_dict(FitSpec().to_dict()))
        True
        >>> fit_id(FitSpec()).startswith("sine-")
        True
        >>> fit_id(FitSpec()) == fit_id(FitSpec().replace(train={"log_every": 7}))
        True
    """
    config = _without_none(spec.to_dict())
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
    return _digest(spec, _without_none(spec.to_dict()))


def _check_value(path: str, value: Any, where: str) -> Any:
    try:
        value = _ADAPTERS[path].validate_python(value)
    except ValidationError as exc:
        raise _from_validation(exc, where) from None
    choices = CHOICES.get(path)
    if choices is not None and value not in choices:
        raise JobError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
    if path == "data.dataset" and value not in DATASETS:
        raise JobError(
            f"{where}: unknown dataset {value!r}; known: {', '.join(sorted(DATASETS))}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise JobError(f"{where}: must be a finite number, got {value!r}")
    bound = BOUNDS.get(path)
    if bound is not None and value is not None:
        op, limit = bound
        if not (value > limit if op == ">" else value >= limit):
            raise JobError(f"{where}: must be {op} {limit:g}, got {value!r}")
    return value


def check_name(name: str, where: str = "name") -> str:
    """``name`` when it is a filename-safe survey name, else a ``JobError`` naming ``where``.

    A survey's results live in ``<out>/<name>/``: a name with ``/``, ``..`` or a leading
    ``.`` would put them elsewhere, or hide them.

    Example:
        >>> check_name("mnist_digits-v2")
        'mnist_digits-v2'
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise JobError(
            f"{where}: {name!r} must be filename-safe (letters, digits, '_', '-', '.'; "
            "starting with a letter or digit)"
        )
    return name


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
            checked = _check_value(paths[0], value, f"{where}[{i}]")
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
                assignment[path] = _check_value(path, item, key_where)
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


def _parse_grid(grid: Mapping[str, Any]) -> tuple[Axis, ...]:
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
    out = _deep_copy(raw)
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


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def parse_job(
    raw: Any, overrides: Sequence[str] = (), source: str | None = None
) -> Job:
    """Validate a job (as loaded from YAML) with ``--set`` overrides applied."""
    if not isinstance(raw, dict):
        raise JobError(f"{source or 'job'}: expected a mapping at the top, got {raw!r}")
    raw = apply_overrides(raw, overrides)
    try:
        top = _TOP.model_validate(raw)
    except ValidationError as exc:
        raise _from_validation(exc) from None
    check_name(top.name)
    base: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        block = getattr(top, section)
        values = block.model_dump(exclude_unset=True) if block is not None else {}
        for key, value in values.items():
            _check_value(f"{section}.{key}", value, f"{section}.{key}")
        base[section] = values
    axes = _parse_grid(top.grid or {})
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


# -- expansion -----------------------------------------------------------------------------


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
        yield Fit(fit_id(spec), spec, labels)


def plan(job: Job) -> list[Fit]:
    """All fits of ``job``; refuses an empty grid, two grid points with one config, and
    training settings ``mflow.fit.check_train`` refuses."""
    fits, seen = [], {}
    for fit in expand(job):
        try:
            check_train(fit.spec.train)
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


# -- the data the fits will read -----------------------------------------------------------


def check_data(fits: Sequence[Fit]) -> None:
    """Refuse data the fits cannot train on, before any fit starts (``survey validate`` and
    ``survey run`` both call this after ``plan``).

    Each distinct source is read once: a user's array file (missing, unreadable, wrong rank,
    rows with NaN or inf), the MNIST files of a split (missing, corrupt; also behind
    ``synthetic_mnist``, whose VAE trains on them; the VAE itself is not trained here), or
    the points of a generated dataset. Also refused: a class the data does not hold, classes
    asked of data without labels, and fewer points than one batch. The loaders' messages
    name the file; the grid point is added when the fit has one.
    """
    from pipelines.job.readers import register_readers

    register_readers()  # a user's .parquet data file is read through pyarrow
    sources: dict[Any, Any] = {}
    for fit in fits:
        try:
            rows = _data_rows(fit.spec.data, sources)
            batch = fit.spec.train.batch_size
            if rows < batch:
                raise ValueError(
                    f"train.batch_size: {batch}, but the fit has {rows} data points "
                    f"({fit.spec.data.dataset}); lower the batch size or use more points"
                )
        except (OSError, ValueError) as exc:
            where = f" (grid point {fit.axes})" if fit.axes else ""
            raise JobError(f"{exc}{where}") from None


def _data_rows(data: DataSpec, sources: dict[Any, Any]) -> int:
    """The number of points a fit of ``data`` sees; ``sources`` caches what was read."""
    from mflow.datasets import load
    from mflow.datasets.arrays import read_array
    from mflow.datasets.mnist import read_mnist, subset_indices

    def unlabelled() -> None:
        if data.classes is not None:
            raise ValueError(
                f"data.classes: the {data.dataset!r} data have no class labels, so classes "
                f"{list(data.classes)} cannot be kept"
            )

    if data.dataset == "array":
        unlabelled()
        if data.path is None:
            raise ValueError("data.path: the 'array' dataset needs the path of a data file")
        key = ("array", data.path, data.key)
        if key not in sources:
            sources[key] = len(read_array(data.path, data.key))
        return min(sources[key], data.n)
    if data.dataset in ("mnist", "synthetic_mnist"):
        key = ("mnist", data.root, data.split)
        if key not in sources:
            sources[key] = read_mnist(data.root, data.split)[1]
        index = subset_indices(sources[key], data.classes, data.n, data.seed)
        return len(index) if data.dataset == "mnist" else data.n
    if data not in sources:
        dataset = load(data)
        sources[data] = (dataset.n, dataset.labels is not None)
    rows, labelled = sources[data]
    if not labelled:
        unlabelled()
    return rows
