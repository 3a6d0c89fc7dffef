"""The one error a job can raise, ``JobError``, and pydantic's validation errors turned into
one line each that names the dotted path of the bad key or value."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

__all__ = ["JobError", "from_validation", "masked"]


class JobError(ValueError):
    """A job file, an override or a grid that cannot be run; the message names the culprit."""


# ``user:password@`` in a URI or an address (``http://bob:hunter2@host:5000``, ``bob:pw@host``)
_CREDENTIALS = re.compile(r"((?:\b[A-Za-z][A-Za-z0-9+.-]*://)?[^\s:/@'\"]+):[^\s@/'\"]+@")


def masked(text: str) -> str:
    """``text`` with the password of every ``user:password@`` in it (a tracking URI, a Ray
    address, a message that quotes one) replaced by ``***``: what is printed or logged.

    Example:
        >>> masked("MLflow at http://bob:hunter2@host:5000/ (down)")
        'MLflow at http://bob:***@host:5000/ (down)'
        >>> masked("sqlite:///mlflow.db, 127.0.0.1:6379, mail bob@host")
        'sqlite:///mlflow.db, 127.0.0.1:6379, mail bob@host'
    """
    return _CREDENTIALS.sub(r"\1:***@", text)


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


def _number(value: Any, like: Any) -> Any:
    """``value`` as a float when the bound it broke is a float (a float field given ``0``
    reads ``got 0.0``, as the field holds it); a string that is not a number stays as is."""
    if isinstance(like, float) and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            return value
    return value


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    if kind == "finite_number":
        return f"must be a finite number, got {error['input']!r}"
    if kind == "string_too_short":  # MinLen(1) on a string field (mflow.config's words)
        return f"must not be empty, got {error['input']!r}"
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", error["ctx"]["expected"])
        return f"expected one of {', '.join(allowed)}, got {error['input']!r}"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(error.get("ctx", {}).values()), "?")
        got = _number(error["input"], limit)
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        return f"must be {bounds[kind]} {limit}, got {got!r}"
    if kind.endswith(("_type", "_parsing")):
        for prefix, what in _EXPECTED:
            if kind.startswith(prefix):
                return f"expected {what}, got {error['input']!r}"
    return error["msg"]


def from_validation(exc: ValidationError, prefix: str = "") -> JobError:
    """One ``JobError`` listing every error of ``exc``, each as ``path: what is wrong``;
    ``prefix`` is where the validated value sits in the job (``grid.seed[1]``)."""
    lines = []
    for error in exc.errors():
        path = _dotted(error["loc"])
        if prefix and path and not path.startswith("["):
            path = f"{prefix}.{path}"
        elif prefix:
            path = prefix + path
        lines.append(f"{path or '(job)'}: {_message(error)}")
    return JobError("; ".join(lines))
