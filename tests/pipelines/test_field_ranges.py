"""Every field of the config declares its range: a walk over every field of every section
tries, per its type, the values no field should take (negative, 0 where a count cannot be
0, absurdly large, inf, nan) and checks that the job schema (``pipelines.job.schema``) and the
library (``mflow.config.check_fields``) refuse each with the same one-line message naming the
dotted key and the value. A new field without a range fails here."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Annotated, Any, Literal

import pytest

from mflow.config import FitSpec, ModelSpec, check_fields, check_model
from pipelines.job import JobError
from pipelines.job.schema import FIELD_TYPES, check_value

SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(FitSpec)}

# Counts and sizes for which 0 is a meaningful value (every other count refuses 0).
ZERO_INT_OK = {
    "data.seed", "train.seed",  # seeds
    "model.couplings",  # a purely convolutional flow (kind conv); mlp refuses it: check_model
    "model.conv_levels",  # a conv flow that flattens at once
    "train.steps",  # no training: the initial model read out
    "train.early_stop_window",  # early stopping off
}
# Floats for which 0 is a meaningful value (every other float refuses 0).
ZERO_FLOAT_OK = {
    "data.noise",  # no noise added
    "prior.entropy_weight", "train.weight_decay", "train.weight_decay_prior",  # term off
    "train.early_stop_tol",  # only a perfectly flat loss
    "train.prior_ema",  # no averaging: the batch's moment
}
# Integers for which 10**12 is a valid value: any seed up to int64.
HUGE_INT_OK = {"data.seed", "train.seed"}


def _base(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
    return tp.__origin__ if typing.get_origin(tp) is Annotated else tp


def _fields() -> list[tuple[str, Any]]:
    out = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            out.append((f"{section}.{f.name}", _base(hints[f.name])))
    return out


def bad_values(path: str, base: Any) -> list[Any]:
    """The values the field at ``path`` of type ``base`` must refuse."""
    if base is bool or base is str:
        return []
    if typing.get_origin(base) is Literal:
        return ["no-such-choice"]
    if typing.get_origin(base) is tuple:
        if _base(typing.get_args(base)[0]) is str:  # names: an empty one names nothing
            return [("",), ("a", "")]
        return [(-1,), (0, 2**64)]
    if base is int:
        values = [-1]
        if path not in ZERO_INT_OK:
            values.append(0)
        if path not in HUGE_INT_OK:
            values.append(10**12)
        values.append(2**64)
        return values
    if base is float:
        values = [-1.0, math.inf, -math.inf, math.nan]
        if path not in ZERO_FLOAT_OK:
            values.append(0.0)
        return values
    raise AssertionError(f"{path}: a field of type {base} the walk does not know; add it here")


CASES = [(path, value) for path, base in _fields() for value in bad_values(path, base)]


def _library_message(path: str, value: Any) -> str:
    section, name = path.split(".")
    spec = dataclasses.replace(SECTIONS[section](), **{name: value})
    with pytest.raises(ValueError) as info:
        check_model(spec, section) if section == "model" else check_fields(spec, section)
    return str(info.value)


@pytest.mark.parametrize(("path", "value"), CASES, ids=[f"{p}={v!r}" for p, v in CASES])
def test_every_field_refuses_values_outside_its_range(path: str, value: Any):
    with pytest.raises(JobError) as info:
        check_value(path, value, path)
    message = str(info.value)
    assert message.startswith(path), message
    shown = value[-1] if isinstance(value, tuple) else value
    assert f"got {shown!r}" in message, message
    assert "\n" not in message
    if not isinstance(value, str):  # a Literal's bad choice: the library checks those too,
        assert _library_message(path, value) == message  # but only the schema checks types


def test_the_walk_covers_every_field_and_every_field_is_typed_in_the_schema():
    walked = {path for path, _ in _fields()}
    assert walked == set(FIELD_TYPES)
    assert {path for path, _ in CASES} >= {p for p, b in _fields() if b in (int, float)}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (ModelSpec(couplings=0),
         "model.couplings: must be >= 1 for model.kind 'mlp' (a flow without couplings is the "
         "identity), got 0"),
        (ModelSpec(kind="conv", couplings=0, conv_levels=0),
         "model.couplings: must be >= 1 for model.kind 'conv' and model.conv_levels 0 (a flow "
         "without couplings is the identity), got 0"),
    ],
)
def test_a_flow_without_couplings_is_refused(model: ModelSpec, expected: str):
    with pytest.raises(ValueError) as info:
        check_model(model)
    assert str(info.value) == expected
    check_model(ModelSpec(kind="conv", couplings=0))  # purely convolutional: fine
