"""Dimension across scales: a survey with a ``noise_floor`` axis, read floor by floor and as one.

A *family* is a set of summary groups that differ only by their noise floor (the group's axes
less ``noise_floor``). For every family with fits at ``mflow.scales.MIN_FLOORS`` or more
floors this module adds to each of its summary rows the scale readout (``mflow.scales``):

- ``id_scale``: the dimension the log-volume of ``A A^T + sigma2 I`` gives across all floors
  at once (from the median log-volume over seeds at each floor), ``id_scale_raw`` unrounded,
  ``id_scale_min`` and ``id_scale_max`` its range over seeds (each seed read alone, where it
  has fits at enough floors);
- ``noise_scale``: the noise std below which the data fill every direction (null: none within
  the floors probed); ``scale_low`` and ``scale_high``: the noise floors (sigma_x) between
  which ``id_scale`` holds (the neighbouring floors whose own finite-difference reading is
  within 1 of it).

``scales_table`` reshapes a summary into ``scales.parquet``: one row per group that has a
floor, its family, the estimate at that floor with its seed spread and settling, the median
log-volume, the finite-difference reading between it and the next coarser floor
(``scale_dim`` at the noise std ``scale_at``), and the family's readout. ``family_summary``
is ``survey analyze --rule scale``: one row per family whose estimate is ``id_scale``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mflow.scales import MIN_FLOORS, ScaleReadout, scale_dimensions, scale_readout

__all__ = [
    "FLOOR_AXES",
    "SCALES_SCHEMA",
    "SCALE_COLUMNS",
    "SCALE_RULE",
    "add_scale_columns",
    "family_label",
    "family_summary",
    "floor_axis",
    "scale_rows",
    "scales_table",
]

SCALE_RULE = "scale"  # survey analyze --rule scale
FLOOR_AXES = ("noise_floor", "train.noise_floor")  # the grid axes that set sigma_x's floor

# The summary's columns of the scale readout, with their Arrow types.
SCALE_COLUMNS: dict[str, pa.DataType] = {
    "id_scale": pa.int64(),
    "id_scale_raw": pa.float64(),
    "id_scale_min": pa.int64(),
    "id_scale_max": pa.int64(),
    "noise_scale": pa.float64(),
    "scale_low": pa.float64(),
    "scale_high": pa.float64(),
}

SCALES_SCHEMA = pa.schema(
    [
        ("survey", pa.string()),
        ("family", pa.string()),  # the group label less the floor ("" when only floors vary)
        ("group", pa.string()),
        ("group_id", pa.string()),
        ("dataset", pa.string()),
        ("class", pa.int64()),
        ("true_dim", pa.int64()),
        ("ambient_dim", pa.int64()),
        ("noise_floor", pa.float64()),  # sigma_x's floor
        ("floor", pa.float64()),  # sigma2 + noise_floor**2
        ("fits", pa.int64()),
        ("ok", pa.int64()),
        ("estimate", pa.float64()),  # median over seeds at this floor (the fits' own rule)
        ("estimate_min", pa.int64()),
        ("estimate_max", pa.int64()),
        ("estimates", pa.list_(pa.int64())),  # seed order
        ("settled", pa.bool_()),
        ("settled_fits", pa.int64()),
        ("rank", pa.float64()),
        ("local_dim", pa.float64()),
        ("log_volume", pa.float64()),  # median over ok fits of log det(A A^T + sigma2 I)
        ("scale_dim", pa.float64()),  # D - dV/dlog t from this floor to the next coarser one
        ("scale_at", pa.float64()),  # the noise std it is read at (geometric mean)
        *SCALE_COLUMNS.items(),
    ]
)


def floor_axis(axes: Mapping[str, Any]) -> str | None:
    """The name of the noise-floor axis among a group's ``axes``, or None.

    Example:
        >>> floor_axis({"dataset": "sine", "noise_floor": 0.01}), floor_axis({"class": 3})
        ('noise_floor', None)
    """
    return next((k for k in axes if k in FLOOR_AXES), None)


def family_label(axes: Mapping[str, Any]) -> str:
    """A group's label without its floor: the family it belongs to.

    Example:
        >>> family_label({"dataset": "sine", "noise_floor": 0.01})
        'dataset=sine'
    """
    return " ".join(f"{k}={v}" for k, v in axes.items() if k not in FLOOR_AXES)


def _axes(summary: pd.DataFrame) -> list[dict[str, Any]]:
    return [json.loads(a) if a else {} for a in summary["axes"]]


def _families(summary: pd.DataFrame) -> dict[str, list[int]]:
    """Family label -> positions of its rows that have a floor, in floor order."""
    out: dict[str, list[int]] = {}
    for i, axes in enumerate(_axes(summary)):
        if floor_axis(axes) is not None and _finite(summary["noise_floor"].iloc[i]):
            out.setdefault(family_label(axes), []).append(i)
    floors = summary["noise_floor"].to_numpy(dtype=np.float64)
    return {k: sorted(v, key=lambda i: floors[i]) for k, v in out.items()}


def _finite(value: Any) -> bool:
    return value is not None and not pd.isna(value) and math.isfinite(float(value))


def _readout(floors: Sequence[float], volumes: Sequence[Any], sigma2: Sequence[Any], dim: int
             ) -> ScaleReadout | None:
    """The readout of the floors with a volume, or None when fewer than ``MIN_FLOORS`` have."""
    kept = [(float(f), float(v), float(s) if _finite(s) else 0.0)
            for f, v, s in zip(floors, volumes, sigma2, strict=True) if _finite(v)]
    if len(kept) < MIN_FLOORS:
        return None
    sx, v, s2 = zip(*kept, strict=True)
    return scale_readout(sx, v, dim, sigma2=s2)


def _seed_readouts(summary: pd.DataFrame, rows: list[int], dim: int) -> list[int]:
    """Each seed's own ``id_scale`` (seeds with fits at enough floors)."""
    per_seed: dict[Any, dict[float, tuple[float, Any]]] = {}
    for i in rows:
        row = summary.iloc[i]
        seeds, volumes = row["seeds"], row["log_volumes"]
        if seeds is None or volumes is None:
            continue
        for seed, volume in zip(seeds, volumes, strict=True):
            if _finite(volume):
                per_seed.setdefault(seed, {})[float(row["noise_floor"])] = (
                    float(volume), row["sigma2"])
    out = []
    for by_floor in per_seed.values():
        values = list(by_floor.values())
        readout = _readout(list(by_floor), [v for v, _ in values], [s for _, s in values], dim)
        if readout is not None:
            out.append(readout.dimension)
    return out


def _family_readouts(summary: pd.DataFrame) -> dict[str, tuple[ScaleReadout, list[int]]]:
    out = {}
    for family, rows in _families(summary).items():
        dims = summary["ambient_dim"].iloc[rows].dropna().unique()
        if len(dims) != 1:
            continue  # no single D: the log-volumes are not comparable
        dim = int(dims[0])
        part = summary.iloc[rows]
        readout = _readout(part["noise_floor"].tolist(), part["log_volume"].tolist(),
                           part["sigma2"].tolist(), dim)
        if readout is not None:
            out[family] = (readout, _seed_readouts(summary, rows, dim))
    return out


def _columns(readout: ScaleReadout | None, seeds: Sequence[int]) -> dict[str, Any]:
    if readout is None:
        return dict.fromkeys(SCALE_COLUMNS)
    return {
        "id_scale": readout.dimension,
        "id_scale_raw": readout.dimension_raw,
        "id_scale_min": min(seeds) if seeds else None,
        "id_scale_max": max(seeds) if seeds else None,
        "noise_scale": readout.noise_scale,
        "scale_low": readout.low,
        "scale_high": readout.high,
    }


def add_scale_columns(summary: pd.DataFrame) -> pd.DataFrame:
    """A copy of a summary (with ``floor``, ``log_volume``, ``log_volumes``, ``seeds`` and
    ``ambient_dim``) with the ``SCALE_COLUMNS`` filled for every row of a family read at
    enough floors, null elsewhere."""
    readouts = _family_readouts(summary) if len(summary) else {}
    values = [
        _columns(*readouts.get(family_label(axes), (None, [])))
        if floor_axis(axes) is not None else _columns(None, [])
        for axes in _axes(summary)
    ]
    out = summary.copy()
    for name in SCALE_COLUMNS:
        out[name] = [v[name] for v in values]
    return out


def scales_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``scales.parquet``: one row per summary group that has a floor, families in the order
    they first appear, floors ascending (see the module docstring)."""
    rows = []
    for family, positions in _families(summary).items():
        part = summary.iloc[positions]
        finite = [i for i, v in enumerate(part["log_volume"]) if _finite(v)]
        steps: dict[int, tuple[float, float]] = {}
        dims = part["ambient_dim"].dropna().unique()
        if len(finite) >= 2 and len(dims) == 1:
            kept = part.iloc[finite]
            r, d = scale_dimensions(kept["noise_floor"].tolist(), kept["log_volume"].tolist(),
                                    int(dims[0]), sigma2=kept["sigma2"].fillna(0.0).tolist())
            steps = {finite[j]: (float(d[j]), float(r[j])) for j in range(len(d))}
        for j, row in enumerate(part.to_dict("records")):
            step = steps.get(j, (None, None))
            rows.append({
                **{name: row.get(name) for name in SCALES_SCHEMA.names},
                "family": family, "scale_dim": step[0], "scale_at": step[1],
                "settled": None if pd.isna(row["settled"]) else bool(row["settled"]),
            })
    return pa.Table.from_pylist(_clean(rows), schema=SCALES_SCHEMA).to_pandas()


def _clean(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NaN and pandas' NA as None, numpy scalars and arrays as Python values (for Arrow)."""
    def one(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return [one(v) for v in value.tolist()]
        if isinstance(value, list):
            return [one(v) for v in value]
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return None
        return value.item() if hasattr(value, "item") else value

    return [{k: one(v) for k, v in row.items()} for row in rows]


def family_summary(
    per_floor: pd.DataFrame, summarize_by: Callable[[list[str]], pd.DataFrame]
) -> pd.DataFrame:
    """``survey analyze --rule scale``: one summary row per family, whose ``estimate`` is the
    family's ``id_scale`` (``estimate_min``/``max`` its range over seeds; ``answer`` only
    when every fit at every floor settled; ``rule`` ``scale``, ``noise_floor`` null).

    Args:
        per_floor: the summary grouped by floor (with the ``SCALE_COLUMNS``).
        summarize_by: the summary of the same fits grouped by the given axes.

    The other columns are over all of a family's fits at every floor: ``estimates`` and
    ``settled_per_fit`` are each fit's own reading at its floor, the spectra bands mix floors.
    A family read at fewer than ``MIN_FLOORS`` floors has a null estimate.
    """
    axes = _axes(per_floor)
    with_floor = [a for a in axes if floor_axis(a) is not None]
    if not with_floor:
        raise ValueError("--rule scale: the survey has no noise_floor axis to read across")
    group_by = [k for k in with_floor[0] if k not in FLOOR_AXES]
    families = summarize_by(group_by)
    by_family = {
        family_label(a): {name: per_floor[name].iloc[i] for name in SCALE_COLUMNS}
        for i, a in enumerate(axes) if floor_axis(a) is not None
    }
    out = families.copy()
    values = [by_family.get(family_label(a), dict.fromkeys(SCALE_COLUMNS))
              for a in _axes(families)]
    for name in SCALE_COLUMNS:
        out[name] = [v[name] for v in values]
    estimate = [None if not _finite(v["id_scale"]) else float(v["id_scale"]) for v in values]
    out["estimate"] = estimate
    out["estimate_min"] = [v["id_scale_min"] for v in values]
    out["estimate_max"] = [v["id_scale_max"] for v in values]
    out["answer"] = [e if s is True else None
                     for e, s in zip(estimate, out["settled"].tolist(), strict=True)]
    out["rule"] = SCALE_RULE
    out["threshold"] = None
    out["noise_floor"] = None
    return out


def _number(value: Any, digits: int = 2) -> str:
    if not _finite(value):
        return "–"
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.{digits}g}"


def scale_rows(scales: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The scales table as text, one row per family: its estimate at each floor (median
    [min–max] over seeds, ``(unsettled)`` where the group did not settle), the readout across
    floors [range over seeds], the noise scale and the floors where the readout holds."""
    floors = sorted({float(f) for f in scales["noise_floor"].dropna()})
    headers = ["family", *(f"σx={f:g}" for f in floors), "across floors", "noise scale",
               "holds for σx in"]
    rows = []
    for family, part in scales.groupby("family", sort=False):
        at = {float(r["noise_floor"]): r for r in part.to_dict("records")}
        cells = [family or "all"]
        for floor in floors:
            row = at.get(floor)
            if row is None or not _finite(row["estimate"]):
                cells.append("–")
                continue
            text = _number(row["estimate"], 3)
            if row["estimate_min"] != row["estimate_max"]:
                text += f" [{_number(row['estimate_min'])}–{_number(row['estimate_max'])}]"
            cells.append(text + ("" if row["settled"] is True else " (unsettled)"))
        first = part.iloc[0]
        across = _number(first["id_scale"])
        if _finite(first["id_scale_min"]) and first["id_scale_min"] != first["id_scale_max"]:
            across += f" [{_number(first['id_scale_min'])}–{_number(first['id_scale_max'])}]"
        span = ("–" if not _finite(first["scale_low"]) else
                f"{_number(first['scale_low'])}–{_number(first['scale_high'])}")
        rows.append([*cells, across, _number(first["noise_scale"]), span])
    return headers, rows
