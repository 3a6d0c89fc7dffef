"""Quality of stored fits beyond the estimate: how far model samples lie from the true manifold,
and how well the first latent coordinate orders a generating factor.

Both read the arrays ``python -m mflow.batch`` keeps per fit (``Store.read_artifacts``):
``samples``, model draws ``x = g^{-1}(z) + offset`` with ``z`` from the prior, in data units;
``projection``, the latent projection ``g(x_i) E_k`` of some training points; ``index``, which
points (``i``, rows of the fit's data, reproduced by ``mflow.datasets.load`` from the stored
config).

- ``off_manifold_distance``: for each sample ``x_j``, ``d_j = min_r |x_j - r|`` over a dense
  reference sample ``R`` of the same manifold drawn with another seed, a stand-in for the
  distance to the manifold itself; the mean, median and 90th percentile of the ``d_j``.
- ``factor_spearman``: ``|rho_S|`` between the first latent coordinate and a generating factor
  (the grey value of the fading square, the position ``t`` along a toy curve): 1 when the
  representation orders the points as the factor does, in either direction.
- ``quality_table``: both, for every stored ok fit of a survey that has arrays.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ConstantInputWarning, spearmanr
from sklearn.neighbors import KDTree

from mflow.config import DataSpec, FitSpec
from mflow.datasets import Dataset, load
from pipelines.results.store import Store

__all__ = [
    "REFERENCE_DATASETS",
    "REFERENCE_SEED_OFFSET",
    "factor_spearman",
    "off_manifold_distance",
    "quality_table",
    "reference_spec",
]

# Datasets whose seed draws only the points, not the manifold: another seed samples the same
# curve or surface, in the same (unstandardized) units. The constructed manifolds
# (mflow.datasets.manifolds) are not here: their seed also draws the rotation (and the warp), and
# standardizing divides by the sample's own spread, so another seed is another manifold.
REFERENCE_DATASETS = frozenset({"line", "sine", "scurve"})
REFERENCE_SEED_OFFSET = 1_000_003  # reference seed = data seed + this: never the fit's own
_REFERENCE_CACHE = 8  # reference trees kept (a fit's data seed picks its reference)


def reference_spec(spec: DataSpec, n: int = 200_000) -> DataSpec:
    """The reference sample of ``spec``'s manifold: ``n`` points, seed ``spec.seed +
    REFERENCE_SEED_OFFSET``; ``ValueError`` for a dataset without one.

    Example:
        >>> reference_spec(DataSpec("sine", n=2000, seed=1), n=10).seed
        1000004
    """
    if spec.dataset not in REFERENCE_DATASETS:
        raise ValueError(
            f"dataset {spec.dataset!r}: no reference sample of the same manifold (another seed "
            f"draws another one); known: {', '.join(sorted(REFERENCE_DATASETS))}"
        )
    if n < 1:
        raise ValueError(f"reference_n: must be >= 1, got {n}")
    return dataclasses.replace(spec, n=n, seed=spec.seed + REFERENCE_SEED_OFFSET)


@functools.lru_cache(maxsize=_REFERENCE_CACHE)
def _reference_tree(spec: DataSpec) -> KDTree:
    return KDTree(load(spec).x.astype(np.float64))


def off_manifold_distance(
    samples: np.ndarray, dataset_spec: DataSpec, reference_n: int = 200_000
) -> dict[str, float | int]:
    """How far ``samples`` (``(m, D)``, data units) lie from the manifold of ``dataset_spec``.

    ``d_j = min_{r in R} |x_j - r|_2`` with ``R`` the ``reference_n`` points of
    ``reference_spec(dataset_spec, reference_n)``. It overestimates the distance to the manifold
    by at most half the spacing of ``R`` near ``x_j`` (about ``1e-5`` for 200,000 points on the
    bulk of a toy curve, more in the sparse tails and for the S-curve, a surface), and by more
    for a sample beyond the reference's extent. Samples stored as float16 carry a rounding
    error of about ``5e-4 |x|``. A non-finite sample has ``d_j = inf``.

    Returns ``mean``, ``median`` and ``p90`` (90th percentile) of the ``d_j``, ``samples``
    (``m``) and ``nonfinite`` (how many samples were not finite).

    Example:
        >>> t = np.linspace(-1.0, 1.0, 5)
        >>> on_line = np.stack([t, t], axis=1)
        >>> round(off_manifold_distance(on_line, DataSpec("line"), 20_000)["mean"], 3)
        0.0
    """
    x = np.asarray(samples, dtype=np.float64)
    tree = _reference_tree(reference_spec(dataset_spec, reference_n))
    dim = tree.data.shape[1]
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != dim:
        raise ValueError(
            f"samples: expected shape (m >= 1, {dim}) for {dataset_spec.dataset!r}, "
            f"got {x.shape}"
        )
    finite = np.isfinite(x).all(axis=1)
    distance = np.full(x.shape[0], np.inf)
    if finite.any():
        distance[finite] = tree.query(x[finite], k=1)[0][:, 0]
    return {
        "mean": float(distance.mean()),
        "median": float(np.median(distance)),
        "p90": float(np.quantile(distance, 0.9)),
        "samples": int(x.shape[0]),
        "nonfinite": int((~finite).sum()),
    }


def factor_spearman(
    projection: np.ndarray, index: np.ndarray, dataset: Dataset, factor: str
) -> float:
    """``|rho_S(u, f)|``: the absolute Spearman rank correlation between the first latent
    coordinate ``u_j = projection[j, 0]`` and the factor ``f_j = factors[factor][index[j]]`` of
    ``dataset``.

    ``rho_S`` is Pearson's correlation of the ranks; its absolute value is 1 exactly when ``u``
    is a strictly monotone function of ``f`` (increasing or decreasing), about 0 when unrelated.
    NaN when either is constant.

    Example:
        >>> data = Dataset("toy", np.zeros((4, 2)), factors={"t": np.array([0.1, 0.4, 0.2, 0.3])})
        >>> u = np.array([[-3.0], [-4.0], [-1.0]])  # decreasing in t = 0.3, 0.4, 0.2
        >>> factor_spearman(u, np.array([3, 1, 2]), data, "t")
        1.0
    """
    if factor not in dataset.factors:
        raise ValueError(
            f"factor: {dataset.name!r} has no factor {factor!r}; "
            f"it has {sorted(dataset.factors) or 'none'}"
        )
    values = np.asarray(dataset.factors[factor])
    if values.shape != (dataset.n,):
        raise ValueError(
            f"factor {factor!r}: expected one value per point, shape ({dataset.n},), "
            f"got {values.shape}"
        )
    proj = np.asarray(projection, dtype=np.float64)
    proj = proj[:, None] if proj.ndim == 1 else proj
    idx = np.asarray(index)
    if proj.ndim != 2 or proj.shape[1] < 1 or idx.shape != (proj.shape[0],):
        raise ValueError(
            f"projection {np.shape(projection)} and index {idx.shape}: expected (m, k >= 1) "
            "and (m,)"
        )
    if not np.issubdtype(idx.dtype, np.integer) or (idx.size and (
            idx.min() < 0 or idx.max() >= dataset.n)):
        raise ValueError(f"index: expected integers in [0, {dataset.n}), got {idx.dtype} "
                         f"from {idx.min(initial=0)} to {idx.max(initial=0)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        rho = spearmanr(proj[:, 0], values[idx]).statistic
    return abs(float(rho))


def _point_factors(data: Dataset) -> list[str]:
    """The factors with one scalar per point, in name order."""
    return sorted(k for k, v in data.factors.items() if np.shape(v) == (data.n,))


def _quality_row(row: pd.Series, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    spec = FitSpec.from_dict(json.loads(row["config"]))
    axes = json.loads(row["axes"]) if row["axes"] else {}
    out: dict[str, Any] = {
        "survey": row["survey"], "fit_id": row["fit_id"], "group": row["group"], **axes,
        "dataset": row["dataset"], "seed": int(row["seed"]), "true_dim": row["true_dim"],
        "estimate": row["id_estimate"],
    }
    data = load(spec.data)
    if "samples" in arrays and not data.is_image and spec.data.dataset in REFERENCE_DATASETS:
        stats = off_manifold_distance(arrays["samples"], spec.data)
        out.update({f"off_{k}": v for k, v in stats.items()})
    if "projection" in arrays and "index" in arrays:
        for name in _point_factors(data):
            out[f"spearman_{name}"] = factor_spearman(
                arrays["projection"], arrays["index"], data, name
            )
    return out


def quality_table(out: str | os.PathLike, survey: str) -> pd.DataFrame:
    """One row per stored ok fit of ``survey`` under ``out`` that has arrays.

    Columns: ``survey``, ``fit_id``, ``group``, the fit's grid axes (one column each),
    ``dataset``, ``seed`` (train seed), ``true_dim``, ``estimate``; where the dataset is in
    ``REFERENCE_DATASETS``, ``off_mean``, ``off_median``, ``off_p90``, ``off_samples`` and
    ``off_nonfinite`` (``off_manifold_distance``); and ``spearman_<factor>`` for each factor of
    the fit's data with one scalar per point (``factor_spearman``). Missing values are NaN.
    The fits' data are loaded again from their stored configs (MNIST-based data need their
    files). ``FileNotFoundError`` when the survey has no fits there.
    """
    from pipelines.job.readers import register_readers

    register_readers()  # the fits' data are loaded again: maybe a user's .parquet file
    store = Store(out, survey)
    if not store.exists():
        raise FileNotFoundError(f"{survey}: no survey of that name under {os.fspath(out)} "
                                f"(no {store.fits_dir})")
    fits = store.read_fits()
    fits = fits[fits["status"] == "ok"].sort_values(["group", "seed", "fit_id"])
    rows = []
    for _, row in fits.iterrows():
        arrays = store.read_artifacts(row["fit_id"])
        if arrays is not None:
            rows.append(_quality_row(row, arrays))
    return pd.DataFrame(rows)
