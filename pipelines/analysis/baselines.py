"""Classical intrinsic-dimension estimators (scikit-dimension) on the points each group's fits saw.

A group's fits differ by seed, and the seed also draws their data (``data.seed``): each fit's
points are ``mflow.datasets.load(spec.data)`` of its resolved config, which is deterministic
(same subset, same seed, same preprocessing as the fit). The estimators run on every distinct
data set of the group; a row per group and estimator holds the median over those data sets,
their range, each one's estimate and the seconds taken.

The fits also saw Gaussian data noise, annealed down to ``train.noise_floor``. By default the
estimators get the points without it (``noise='none'``: the usual way these estimators are
reported); ``noise='floor'`` adds ``N(0, noise_floor**2)`` noise, drawn from the fit's seed,
as the fits saw at the end of training. Nearest-neighbour estimators read such noise as extra
dimensions once it is comparable with the distances between neighbours (e.g. TwoNN reads about
2 on the 2,000-point sine at a floor of 0.01, 1 without it).

Results are cached in ``<out>/<name>/baselines/<group_id>.parquet``: a row is reused while its
``key`` (the data sets, the estimator, its parameters and the noise) is unchanged. Groups with
something to compute run as one Ray task each (``compute_baselines``).
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from mflow.config import FitSpec
from mflow.datasets import DATA_VERSIONS, load
from pipelines.results.store import Store

__all__ = [
    "BASELINES_SCHEMA",
    "DANCO_MAX_DIM",
    "DEFAULT_ESTIMATORS",
    "ESTIMATORS",
    "NOISE",
    "compute_baselines",
    "data_sets",
    "estimate",
    "points",
    "read_baselines",
    "run_group",
]

# DANCo calibrates against simulated data of every dimension up to the ambient one; its cost
# grows with it (about 13 s at D = 32 and 2,000 points on one core, over 12 minutes on 5,000
# MNIST digits, D = 784, where it also returned 784). Above this it is skipped, with a note.
DANCO_MAX_DIM = 32


def _skdim() -> Any:
    import skdim

    return skdim.id


# name -> (parameters, factory). Parameters are scikit-dimension's defaults, written out so
# that they are recorded beside each estimate.
ESTIMATORS: dict[str, tuple[dict[str, Any], Callable[..., Any]]] = {
    # Facco et al. 2017: ratio of the two nearest-neighbour distances.
    "TwoNN": ({"discard_fraction": 0.1}, lambda **p: _skdim().TwoNN(**p)),
    # Levina & Bickel 2005 with 20 neighbours, pointwise estimates combined as MacKay &
    # Ghahramani suggest (the harmonic mean).
    "MLE": ({}, lambda **p: _skdim().MLE(**p)),
    # Global PCA, Fukunaga-Olsen rule: components above 5% of the largest eigenvalue.
    "lPCA": ({"ver": "FO", "alphaFO": 0.05}, lambda **p: _skdim().lPCA(verbose=False, **p)),
    # Ceruti et al. 2014 (skipped above DANCO_MAX_DIM ambient dimensions).
    "DANCo": ({"k": 10, "random_state": 0}, lambda **p: _skdim().DANCo(**p)),
}
DEFAULT_ESTIMATORS = ("TwoNN", "MLE", "lPCA", "DANCo")
NOISE = ("none", "floor")

BASELINES_SCHEMA = pa.schema(
    [
        ("survey", pa.string()),
        ("group", pa.string()),
        ("group_id", pa.string()),
        ("estimator", pa.string()),
        ("estimate", pa.float64()),  # median over the group's data sets; null when none ran
        ("estimate_min", pa.float64()),
        ("estimate_max", pa.float64()),
        ("estimates", pa.list_(pa.float64())),  # per data set (data seed order); NaN if none
        ("data_seeds", pa.list_(pa.int64())),
        ("n", pa.int64()),  # points per data set
        ("ambient_dim", pa.int64()),
        ("noise_std", pa.float64()),  # noise added to the points (0: none)
        ("wall_s", pa.float64()),  # seconds, summed over the data sets
        ("params", pa.string()),  # JSON: the estimator's parameters
        ("note", pa.string()),  # why an estimate is missing (skipped, failed)
        ("key", pa.string()),  # cache key: data sets, estimator, parameters, noise
        ("computed_at", pa.timestamp("us", tz="UTC")),
    ]
)


# -- the points ------------------------------------------------------------------------------


def data_sets(configs: Sequence[str], noise: str = "none") -> list[dict[str, Any]]:
    """The distinct data sets behind a group's fits, from their configs (JSON FitSpecs).

    Each is ``{"data": <DataSpec as a dict>, "noise_std": float, "noise_seed": int | None}``,
    sorted by data seed.

    Example:
        >>> specs = [FitSpec().replace(data={"seed": s}, train={"seed": s}) for s in (1, 0, 1)]
        >>> [d["data"]["seed"] for d in data_sets([s.to_json() for s in specs])]
        [0, 1]
    """
    if noise not in NOISE:
        raise ValueError(f"noise: expected one of {', '.join(NOISE)}, got {noise!r}")
    seen: dict[str, dict[str, Any]] = {}
    for config in configs:
        spec = FitSpec.from_dict(json.loads(config))
        item = {
            "data": spec.to_dict()["data"],
            "noise_std": spec.train.noise_floor if noise == "floor" else 0.0,
            "noise_seed": spec.train.seed if noise == "floor" else None,
        }
        seen.setdefault(json.dumps(item, sort_keys=True), item)
    return sorted(seen.values(), key=lambda d: (d["data"]["seed"], json.dumps(d, sort_keys=True)))


def points(item: Mapping[str, Any]) -> np.ndarray:
    """The ``(n, D)`` float64 points of one data set of ``data_sets`` (images flattened)."""
    x = load(FitSpec.from_dict({"data": item["data"]}).data).x
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    if item["noise_std"] > 0:
        rng = np.random.default_rng([int(item["noise_seed"]), 20240511])
        x = x + item["noise_std"] * rng.standard_normal(x.shape)
    return x


# -- one estimator ---------------------------------------------------------------------------


def estimate(name: str, x: np.ndarray) -> tuple[float | None, float, str | None]:
    """Run estimator ``name`` on points ``x``: ``(dimension or None, seconds, note)``.

    An unknown name raises; an estimator that fails or returns no finite value gives ``None``
    and a note saying why; DANCo above ``DANCO_MAX_DIM`` dimensions is skipped.

    Example:
        >>> x = np.random.default_rng(0).standard_normal((500, 3)) @ np.ones((3, 5))
        >>> round(estimate("lPCA", x)[0])
        1
    """
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; known: {', '.join(ESTIMATORS)}")
    if name == "DANCo" and x.shape[1] > DANCO_MAX_DIM:
        return None, 0.0, (
            f"skipped: ambient dimension {x.shape[1]} > {DANCO_MAX_DIM} (DANCo's cost grows "
            "with it)"
        )
    params, make = ESTIMATORS[name]
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(make(**params).fit(x).dimension_)
    except Exception as exc:  # noqa: BLE001 - recorded as a note, like a failed fit
        return None, time.perf_counter() - start, f"failed: {type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    if not math.isfinite(value):
        return None, seconds, f"no estimate ({value})"
    return value, seconds, None


def _key(items: Sequence[Mapping[str, Any]], name: str) -> str:
    payload: dict[str, Any] = {
        "data": list(items), "estimator": name, "params": ESTIMATORS[name][0]
    }
    # A loader version above 1 (as in the fit id): the same DataSpec, other points.
    versions = {i["data"]["dataset"]: DATA_VERSIONS.get(i["data"]["dataset"], 1) for i in items}
    if any(v > 1 for v in versions.values()):
        payload["data_versions"] = {k: v for k, v in versions.items() if v > 1}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# -- one group -------------------------------------------------------------------------------


def run_group(task: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of one group: ``task`` has ``survey``, ``group``, ``group_id``, ``items``
    (from ``data_sets``) and ``estimators``. Pure apart from loading the data."""
    from pipelines.job.readers import register_readers

    register_readers()  # in a Ray task too: a user's .parquet data
    items, names = task["items"], task["estimators"]
    results: dict[str, list[tuple[float | None, float, str | None]]] = {n: [] for n in names}
    n_points, ambient = [], []
    for item in items:
        try:
            x = points(item)
        except Exception as exc:  # noqa: BLE001 - e.g. data files missing where this ran
            for name in names:
                results[name].append((None, 0.0, f"data not loaded: {type(exc).__name__}: {exc}"))
            continue
        n_points.append(x.shape[0])
        ambient.append(x.shape[1])
        for name in names:
            results[name].append(estimate(name, x))
    rows = []
    for name in names:
        values = [v for v, _, _ in results[name] if v is not None]
        notes = sorted({note for _, _, note in results[name] if note})
        rows.append(
            {
                "survey": task["survey"],
                "group": task["group"],
                "group_id": task["group_id"],
                "estimator": name,
                "estimate": statistics.median(values) if values else None,
                "estimate_min": min(values) if values else None,
                "estimate_max": max(values) if values else None,
                "estimates": [math.nan if v is None else v for v, _, _ in results[name]],
                "data_seeds": [int(item["data"]["seed"]) for item in items],
                "n": int(statistics.median(n_points)) if n_points else None,
                "ambient_dim": ambient[0] if ambient else None,
                "noise_std": max((item["noise_std"] for item in items), default=0.0),
                "wall_s": float(sum(s for _, s, _ in results[name])),
                "params": json.dumps(ESTIMATORS[name][0], sort_keys=True),
                "note": "; ".join(notes) or None,
                "key": _key(items, name),
                "computed_at": datetime.now(UTC),
            }
        )
    return rows


# -- a survey's baselines --------------------------------------------------------------------


def _path(store: Store, gid: str) -> str:
    return f"{store.root}/baselines/{gid}.parquet"


def _read_file(store: Store, path: str) -> list[dict[str, Any]]:
    if store.fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    return ds.dataset(path, format="parquet", filesystem=store.fs,
                      schema=BASELINES_SCHEMA).to_table().to_pylist()


def read_baselines(store: Store, group_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The cached baselines of ``store``'s survey (only ``group_ids`` when given)."""
    folder = f"{store.root}/baselines"
    if store.fs.get_file_info(folder).type == pafs.FileType.NotFound:
        return BASELINES_SCHEMA.empty_table().to_pandas()
    table = ds.dataset(folder, format="parquet", filesystem=store.fs,
                       schema=BASELINES_SCHEMA).to_table().to_pandas()
    if group_ids is not None:
        table = table[table["group_id"].isin(list(group_ids))].reset_index(drop=True)
    return table


def _run_on_ray(tasks: Sequence[Mapping[str, Any]], address: str | None) -> list[list[dict]]:
    import ray

    from pipelines.execution import cluster

    started = cluster.init_ray(address)
    try:
        remote = ray.remote(num_cpus=1, max_retries=1)(run_group)
        return ray.get([remote.remote(dict(task)) for task in tasks])
    finally:
        if started:
            ray.shutdown()


def compute_baselines(
    store: Store,
    fits: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    estimators: Sequence[str] = DEFAULT_ESTIMATORS,
    noise: str = "none",
    use_ray: bool = True,
    address: str | None = None,
    on_group: Callable[[str, bool], None] | None = None,
) -> pd.DataFrame:
    """Baselines of every group in ``summary`` (its ``fit_ids`` name the group's fits).

    Cached rows whose key still matches are reused; the rest run as one Ray task per group
    (``use_ray=False``: here, one group after another) and are written to
    ``baselines/<group_id>.parquet`` atomically. ``on_group(group, cached)`` hears each group.
    Returns the rows of the asked estimators, in the summary's group order.
    """
    unknown = [name for name in estimators if name not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator {unknown[0]!r}; known: {', '.join(ESTIMATORS)}")
    configs = dict(zip(fits["fit_id"], fits["config"], strict=True))
    tasks, kept = [], {}
    for row in summary.itertuples(index=False):
        items = data_sets([configs[f] for f in row.fit_ids if f in configs], noise)
        valid = [r for r in _read_file(store, _path(store, row.group_id))
                 if r["estimator"] in ESTIMATORS and r["key"] == _key(items, r["estimator"])]
        kept[row.group_id] = valid  # rows of other data (an older job, other noise) are dropped
        todo = [name for name in estimators if name not in {r["estimator"] for r in valid}]
        if todo:
            tasks.append({"survey": store.survey, "group": row.group, "group_id": row.group_id,
                          "items": items, "estimators": todo})
        elif on_group is not None:
            on_group(row.group, True)
    if tasks:
        if use_ray:
            results = _run_on_ray(tasks, address)
        else:
            results = [run_group(task) for task in tasks]
        for task, rows in zip(tasks, results, strict=True):
            fresh = {r["estimator"] for r in rows}
            merged = [r for r in kept[task["group_id"]] if r["estimator"] not in fresh] + rows
            lasting = [r for r in merged if "data not loaded" not in (r["note"] or "")]
            store._write(lasting, BASELINES_SCHEMA, _path(store, task["group_id"]))
            kept[task["group_id"]] = merged
            if on_group is not None:
                on_group(task["group"], False)
    order = {name: i for i, name in enumerate(estimators)}
    rows = [r for gid in summary["group_id"] for r in
            sorted(kept[gid], key=lambda r: order.get(r["estimator"], len(order)))
            if r["estimator"] in order]
    return pa.Table.from_pylist(rows, schema=BASELINES_SCHEMA).to_pandas()
