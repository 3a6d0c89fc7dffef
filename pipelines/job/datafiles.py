"""The data the fits will read, checked before any fit starts: files, classes and sizes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from mflow.config import DataSpec
from pipelines.job.errors import JobError
from pipelines.job.footprint import check_footprint
from pipelines.job.grid import Fit

__all__ = ["check_data"]


# Points of a generated dataset made to check its spec (its options, its labels): the whole
# dataset is never made here.
SAMPLE_POINTS = 64


def check_data(fits: Sequence[Fit], memory: int | None = None, local: bool = True) -> None:
    """Refuse data the fits cannot train on, before any fit starts (``survey validate`` and
    ``survey run`` both call this after ``plan``).

    First, before any point is made or read, a fit whose data and model cannot fit in
    ``memory`` bytes (default: this machine's) is refused, naming the field and the numbers
    (``pipelines.job.footprint``). Then each distinct source is read once: a user's array
    file (missing, unreadable, wrong rank, rows with NaN or inf), the MNIST files of a split
    (missing, corrupt; also behind ``synthetic_mnist``, whose VAE trains on them; the VAE
    itself is not trained here), the images of a user's folder that a fit reads (each
    decoded), or a few points of a generated dataset (``SAMPLE_POINTS``,
    not ``data.n`` of them). Also refused: a class the data does not hold, classes asked of
    data without labels, and fewer points than one batch. The loaders' messages name the
    file; the grid point is added when the fit has one. ``local=False`` (the fits run on a
    joined cluster) leaves the memory check to ``run_survey``, against the cluster's nodes.
    """
    from pipelines.job.readers import register_readers

    register_readers()  # a user's .parquet data file is read through pyarrow
    for fit in fits if local else ():
        try:
            check_footprint(fit.spec, memory)
        except JobError as exc:
            where = f" (grid point {fit.axes})" if fit.axes else ""
            raise JobError(f"{exc}{where}") from None
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
    from mflow.datasets.registry import with_default_n

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
        key = ("array", data.path, data.key, data.columns)
        if key not in sources:
            sources[key] = len(read_array(data.path, data.key, data.columns))
        return sources[key] if data.n is None else min(sources[key], data.n)
    if data.dataset == "images":  # every image the fit reads is decoded: corrupt ones named
        key = ("images", data.path, data.classes, data.n, data.seed)
        if key not in sources:
            sources[key] = load(data).n
        return sources[key]
    data = with_default_n(data)
    if data.dataset in ("mnist", "synthetic_mnist"):
        key = ("mnist", data.root, data.split)
        if key not in sources:
            sources[key] = read_mnist(data.root, data.split)[1]
        index = subset_indices(sources[key], data.classes, data.n, data.seed)
        return len(index) if data.dataset == "mnist" else data.n
    if data not in sources:
        sample = load(dataclasses.replace(data, n=min(data.n, SAMPLE_POINTS)))
        sources[data] = (data.n, sample.labels is not None)
    rows, labelled = sources[data]
    if not labelled:
        unlabelled()
    return rows
