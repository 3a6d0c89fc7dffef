"""The schema of a job file: the five config blocks typed from ``mflow.config``'s fields
(their bounds and choices included), the ``resources`` and ``analysis`` blocks, and the checks
of one value by its dotted path.

The config blocks map one to one onto the sections of ``mflow.config.FitSpec``: their keys are
the fields of those dataclasses, checked with strict types (a float field also takes a string
such as ``1e-3``, which YAML 1.1 reads as a string, and must be finite). A field's bounds
(``Annotated[float, Gt(0.0)]``) and closed set of values (``Literal``) are declared once, on the
field in ``mflow.config``; pydantic validates them here, ``mflow.fit.check_train`` there.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import (
    AllowInfNan,
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

from mflow.config import FitSpec
from mflow.datasets import DATASETS
from pipelines.job.errors import JobError, from_validation

__all__ = [
    "FIELD_TYPES",
    "SECTIONS",
    "Analysis",
    "JobFile",
    "Resources",
    "check_name",
    "check_value",
]

SECTIONS = ("data", "model", "prior", "train", "readout")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


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


LaxFloat = Annotated[StrictFloat, AllowInfNan(False), BeforeValidator(_lax_float)]


def _float_bound(bound: Any) -> Any:
    """An ``annotated_types`` bound of a float field as a pydantic ``Field`` of a float limit."""
    for kind in (Gt, Ge, Lt, Le):
        if isinstance(bound, kind):
            name = kind.__name__.lower()
            return Field(**{name: float(getattr(bound, name))})
    return bound


def _annotation(tp: Any) -> Any:
    """The strict pydantic type for a dataclass field's type, its constraints kept."""
    origin = typing.get_origin(tp)
    if origin is Annotated:  # bounds (annotated_types), validated by pydantic as they are
        metadata = tp.__metadata__
        if tp.__origin__ is float:
            # As pydantic Fields: typing caches Annotated[float, Gt(0.0)] as the equal
            # Annotated[float, Gt(0)] (pydantic's PositiveFloat), and the message would read
            # "got 0" for a float field.
            metadata = tuple(_float_bound(m) for m in metadata)
        return Annotated[(_annotation(tp.__origin__), *metadata)]
    if origin is Literal:
        return tp
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
        hints = typing.get_type_hints(cls, include_extras=True)
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


# The whole file: the five config blocks, each a model of its section's fields.
JobFile = create_model(
    "JobFile",
    __config__=ConfigDict(extra="forbid"),
    name=(StrictStr, ...),
    description=(StrictStr | None, None),
    grid=(dict[StrictStr, Any] | None, None),
    resources=(Resources | None, None),
    analysis=(Analysis | None, None),
    **{section: (_section_model(section) | None, None) for section in SECTIONS},
)


def check_value(path: str, value: Any, where: str) -> Any:
    """``value`` validated as the field at dotted ``path`` (``train.lr``), else a ``JobError``
    naming ``where`` (the value's place in the job file)."""
    try:
        value = _ADAPTERS[path].validate_python(value)
    except ValidationError as exc:
        raise from_validation(exc, where) from None
    if path == "data.dataset" and value not in DATASETS:
        raise JobError(
            f"{where}: unknown dataset {value!r}; known: {', '.join(sorted(DATASETS))}"
        )
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

