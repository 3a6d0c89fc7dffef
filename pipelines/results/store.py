"""The Parquet store of a survey: one file per fit, written atomically by the driver only.

Layout under ``<out>/<survey>/``::

    fits/<fit_id>.parquet     one row: the fit's config, status, estimate and spectrum
    curves/<fit_id>.parquet   one row per logged step: loss, noise, lr, estimate, spectrum
    artifacts/<fit_id>.npz    optional: model samples and the latent projection of some points
    tune/                     Ray Tune's trials and checkpoints (pipelines.execution.checkpoints)

A file is written under a temporary name starting with ``.`` in the same folder, then moved
onto its final name, so ``pandas.read_parquet('<out>/<survey>/fits')`` (whose dataset discovery
skips names starting with ``.`` or ``_``) never sees a half-written file, and a fit written
twice still has one row. A writer killed between the two steps leaves its temporary file;
``Store.prepare`` (called before a survey run starts) deletes such files, after checking that
the folder can be written at all. ``<out>`` is a local path or any URI pyarrow's filesystems
take (``s3://bucket/prefix``); the survey name must be filename-safe (``check_name``).
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mflow.files import atomic_write
from mflow.fit import FitResult
from pipelines.job import SHORT_AXES, Fit, JobError, check_name, legacy_fit_id

__all__ = ["CURVES_SCHEMA", "FITS_SCHEMA", "Store", "curve_rows", "fit_record", "group_label"]

_LIST = pa.list_(pa.float64())
_WRITE_CHECK = ".write-check."  # prefix of the file Store.prepare writes and deletes

FITS_SCHEMA = pa.schema(
    [
        ("survey", pa.string()),
        ("fit_id", pa.string()),
        ("dataset", pa.string()),
        ("subset", pa.int64()),  # subset size asked for: data.n (per class for class data)
        ("class", pa.int64()),  # the one class kept, else null (see classes)
        ("classes", pa.list_(pa.int64())),  # data.classes; null keeps all
        ("noise_floor", pa.float64()),
        ("seed", pa.int64()),  # train.seed
        ("n", pa.int64()),  # training points the fit saw
        ("ambient_dim", pa.int64()),
        ("true_dim", pa.int64()),
        ("status", pa.string()),  # ok, diverged or failed
        ("error", pa.string()),
        ("id_estimate", pa.int64()),
        ("id_rule", pa.string()),
        ("eigenvalues", _LIST),  # final spectrum of A A^T, descending
        ("steps", pa.int64()),
        ("wall_s", pa.float64()),
        ("device", pa.string()),
        ("diverged_step", pa.int64()),
        ("stop_reason", pa.string()),  # early_stop when it settled before train.steps, else null
        # Whether the estimate settled (mflow.settle) and the figures it was decided on: the
        # steps it has held at the noise floor, the drift of the eigenvalues either side of
        # the cut (a factor; inf: too few logged points) and their smallest margin from it.
        # Null for a fit without a result or recorded before the criterion (absent from
        # older files: readers here fill them with nulls)
        ("settled", pa.bool_()),
        ("settle_stable_steps", pa.int64()),
        ("settle_drift", pa.float64()),
        ("settle_margin", pa.float64()),
        # Issue 16: the rank of A A^T (flat dimensions needed; id_estimate is read from it and
        # local_dim, mflow.local.headline_dimension), the local dimension of the codes in those
        # directions, its spread over points and its rule (null before; absent from older files)
        ("id_rank", pa.int64()),
        ("local_dim", pa.float64()),
        ("local_dim_spread", pa.float64()),
        ("local_rule", pa.string()),
        ("retries", pa.int64()),  # trial restarts after failures
        # What else the run should know, not an error: e.g. an earlier run's checkpoint did
        # not load, so the fit trained from step 0 (null when nothing; absent from older files)
        ("note", pa.string()),
        ("axes", pa.string()),  # JSON: grid axis -> this fit's value (label)
        ("group", pa.string()),  # the non-seed axes, "axis=value ...": fits that differ by seed
        ("mlflow_run_id", pa.string()),
        ("config", pa.string()),  # JSON of the resolved FitSpec
        # When the driver heard the fit's trial first start in the run that recorded it
        # (null in older files) and when it heard the fit end
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
    ]
)

CURVES_SCHEMA = pa.schema(
    [
        ("survey", pa.string()),
        ("fit_id", pa.string()),
        ("step", pa.int64()),
        ("loss", pa.float64()),
        ("noise_std", pa.float64()),
        ("lr", pa.float64()),
        ("estimate", pa.int64()),
        ("eigenvalues", _LIST),
        # the codes' local dimension at this step (null before the noise floor; mflow.fit)
        ("local_dim", pa.float64()),
    ]
)


def _is_seed_axis(name: str) -> bool:
    return name == "seed" or name in ("train.seed", "data.seed") or (
        name in SHORT_AXES and set(SHORT_AXES[name]) <= {"train.seed", "data.seed"}
    )


def group_label(axes: Mapping[str, Any]) -> str:
    """The grid position of a fit without its seed: fits that differ only by seed share it.

    Example:
        >>> group_label({"dataset": "sine", "seed": 2, "variant": "baseline"})
        'dataset=sine variant=baseline'
    """
    return " ".join(f"{k}={v}" for k, v in axes.items() if not _is_seed_axis(k))


def fit_record(
    survey: str,
    fit: Fit,
    result: FitResult | None,
    *,
    error: str | None = None,
    mlflow_run_id: str | None = None,
    retries: int = 0,
    finished_at: datetime | None = None,
    note: str | None = None,
    started_at: datetime | None = None,
) -> dict[str, Any]:
    """The fits-table row of ``fit``: from its result, or a failed row when there is none."""
    spec = fit.spec
    classes = list(spec.data.classes) if spec.data.classes is not None else None
    row: dict[str, Any] = {
        "survey": survey,
        "fit_id": fit.fit_id,
        "dataset": spec.data.dataset,
        "subset": spec.data.n,
        "class": classes[0] if classes is not None and len(classes) == 1 else None,
        "classes": classes,
        "noise_floor": spec.train.noise_floor,
        "seed": spec.train.seed,
        "n": None,
        "ambient_dim": None,
        "true_dim": None,
        "status": "failed",
        "error": error,
        "id_estimate": None,
        "id_rule": spec.readout.rule,
        "eigenvalues": None,
        "steps": None,
        "wall_s": None,
        "device": None,
        "diverged_step": None,
        "stop_reason": None,
        "settled": None,
        "settle_stable_steps": None,
        "settle_drift": None,
        "settle_margin": None,
        "id_rank": None,
        "local_dim": None,
        "local_dim_spread": None,
        "local_rule": None,
        "retries": retries,
        "note": note,
        "axes": json.dumps(fit.axes, sort_keys=False),
        "group": group_label(fit.axes),
        "mlflow_run_id": mlflow_run_id,
        "config": spec.to_json(),
        "started_at": started_at,
        "finished_at": finished_at or datetime.now(UTC),
    }
    if result is not None:
        row.update(
            n=result.n,
            ambient_dim=result.ambient_dim,
            true_dim=result.true_dim,
            status=result.status,
            error=result.error if error is None else error,
            id_estimate=result.id_estimate,
            id_rule=result.id_rule,
            eigenvalues=[float(v) for v in result.eigenvalues],
            steps=result.steps,
            wall_s=result.wall_s,
            device=result.device,
            diverged_step=result.diverged_step,
            stop_reason=result.stop_reason,
            settled=result.settled,
            settle_stable_steps=result.settle_stable_steps,
            settle_drift=result.settle_drift,
            settle_margin=result.settle_margin,
            id_rank=result.id_rank,
            local_dim=result.local_dim,
            local_dim_spread=result.local_dim_spread,
            local_rule=result.local_rule,
        )
    return row


def curve_rows(survey: str, fit_id: str, result: FitResult | None) -> list[dict[str, Any]]:
    """The curves-table rows of a fit: one per logged step (none for a failed fit)."""
    if result is None:
        return []
    return [
        {
            "survey": survey,
            "fit_id": fit_id,
            "step": p.step,
            "loss": p.loss,
            "noise_std": p.noise_std,
            "lr": p.lr,
            "estimate": p.estimate,
            "eigenvalues": [float(v) for v in p.eigenvalues],
            "local_dim": p.local_dim,
        }
        for p in result.curve
    ]


def _list(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    try:
        return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _filesystem(out: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    out = os.fspath(out)
    if "://" in out:
        return pafs.FileSystem.from_uri(out)
    return pafs.LocalFileSystem(), os.path.abspath(out)


class Store:
    """The Parquet files of survey ``survey`` under ``out`` (a path or a pyarrow URI)."""

    def __init__(self, out: str | os.PathLike, survey: str) -> None:
        self.out = os.fspath(out)
        self.survey = check_name(survey, "survey name")
        self.fs, base = _filesystem(out)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.root = f"{base.rstrip('/')}/{survey}"
        self.fits_dir = f"{self.root}/fits"
        self.curves_dir = f"{self.root}/curves"
        self.artifacts_dir = f"{self.root}/artifacts"

    @property
    def tune_path(self) -> str:
        """Where Ray Tune keeps trial folders and checkpoints, as a path on ``self.fs``."""
        return f"{self.root}/tune"

    @property
    def tune_dir(self) -> str:
        """The same folder as Ray takes it (``storage_path``): a local path or a URI."""
        if "://" in self.out:
            return f"{self.out.rstrip('/')}/{self.survey}/tune"
        return self.tune_path

    def fit_path(self, fit_id: str) -> str:
        return f"{self.fits_dir}/{fit_id}.parquet"

    def curve_path(self, fit_id: str) -> str:
        return f"{self.curves_dir}/{fit_id}.parquet"

    # -- writing ---------------------------------------------------------------------------

    def _put(self, path: str, write: Callable[[Any], None]) -> None:
        """Write the file ``path`` through ``write(binary file)`` under a temporary name in its
        folder (``.<name>.<hex>.tmp``), then move it onto ``path``.

        A local folder goes through ``mflow.files.atomic_write`` (the one local atomic writer:
        ``os.replace``); an object store (``s3://``) has no rename, so there the temporary
        object is moved with the filesystem's own ``move``, and deleted if the write fails.
        """
        if self.local:
            atomic_write(path, write)
            return
        folder, name = path.rsplit("/", 1)
        self.fs.create_dir(folder, recursive=True)
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            with self.fs.open_output_stream(tmp) as f:
                write(f)
            self.fs.move(tmp, path)
        except BaseException:
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass
            raise

    def _write(self, rows: Sequence[Mapping[str, Any]], schema: pa.Schema, path: str) -> None:
        table = pa.Table.from_pylist(list(rows), schema=schema)
        self._put(path, lambda f: pq.write_table(table, f))

    def write(self, record: Mapping[str, Any], curve: Sequence[Mapping[str, Any]]) -> None:
        """Write one fit: its curve first, then its row (the row's file marks the fit done)."""
        fit_id = record["fit_id"]
        self._write(curve, CURVES_SCHEMA, self.curve_path(fit_id))
        self._write([record], FITS_SCHEMA, self.fit_path(fit_id))

    def write_artifacts(self, fit_id: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Keep a fit's arrays (model samples, latent projection) as ``artifacts/<id>.npz``."""
        buffer = io.BytesIO()  # numpy writes zip members seekably; a stream may not seek
        np.savez_compressed(buffer, **arrays)
        self._put(f"{self.artifacts_dir}/{fit_id}.npz", lambda f: f.write(buffer.getvalue()))

    @staticmethod
    def split_artifacts(npz: Any) -> dict[str, dict[str, np.ndarray]]:
        """``{fit_id: {name: array}}`` from an npz whose keys are ``<fit_id>/<name>`` (what
        ``mflow.batch`` and a pack trial's final checkpoint hold)."""
        out: dict[str, dict[str, np.ndarray]] = {}
        for key in npz.files:
            fit_id, name = key.split("/", 1)
            out.setdefault(fit_id, {})[name] = npz[key]
        return out

    def read_artifacts(self, fit_id: str) -> dict[str, np.ndarray] | None:
        """A fit's kept arrays, or ``None`` when it has none."""
        path = f"{self.artifacts_dir}/{fit_id}.npz"
        if not self._exists(path):
            return None
        with self.fs.open_input_file(path) as f:
            data = f.read()
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}

    def set_mlflow_run_id(self, fit_id: str, run_id: str) -> None:
        """Point the stored row of ``fit_id`` at MLflow run ``run_id`` (rewritten atomically)."""
        path = self.fit_path(fit_id)
        rows = ds.dataset(path, format="parquet", filesystem=self.fs, schema=FITS_SCHEMA)
        rows = rows.to_table().to_pylist()
        for row in rows:
            row["mlflow_run_id"] = run_id
        self._write(rows, FITS_SCHEMA, path)

    def adopt_legacy(self, fits: Sequence[Fit]) -> list[str]:
        """Store under its id each of ``fits`` that is stored only under the id it had before
        (``pipelines.job.legacy_fit_id``: before fit ids left out the data folder, the device
        and the logging interval). Its curve, artifacts and row (the row last: it marks the fit
        done) are written under the new id, then the old files deleted. Returns the ids
        adopted; a fit stored under both ids keeps its new files (and its old ones)."""
        stored = set(self.statuses())
        adopted = []
        for fit in fits:
            old = legacy_fit_id(fit.spec)
            if fit.fit_id not in stored and old != fit.fit_id and old in stored:
                self._rename(old, fit.fit_id)
                adopted.append(fit.fit_id)
        return adopted

    def _rename(self, old: str, new: str) -> None:
        def rows(path: str, schema: pa.Schema) -> list[dict[str, Any]]:
            table = ds.dataset(path, format="parquet", filesystem=self.fs, schema=schema)
            return [{**row, "fit_id": new} for row in table.to_table().to_pylist()]

        if self._exists(self.curve_path(old)):
            self._write(rows(self.curve_path(old), CURVES_SCHEMA), CURVES_SCHEMA,
                        self.curve_path(new))
        artifacts = f"{self.artifacts_dir}/{old}.npz"
        if self._exists(artifacts):
            self.fs.move(artifacts, f"{self.artifacts_dir}/{new}.npz")
        self._write(rows(self.fit_path(old), FITS_SCHEMA), FITS_SCHEMA, self.fit_path(new))
        self.fs.delete_file(self.fit_path(old))
        if self._exists(self.curve_path(old)):
            self.fs.delete_file(self.curve_path(old))

    def prepare(self) -> int:
        """Get ready to write: refuse a folder that cannot be written, before any fit starts
        (``JobError`` naming it), then delete the temporary files that writers killed
        mid-write left behind. Returns the number deleted."""
        probe = f"{self.root}/{_WRITE_CHECK}{uuid.uuid4().hex}.tmp"
        try:
            self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(probe) as f:
                f.write(b"ok")
            self.fs.delete_file(probe)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else " ".join(str(exc).split())
            raise JobError(
                f"results folder {self.root}: not writable ({reason}); choose a writable "
                "one with --out or $MFLOW_RESULTS"
            ) from None
        return self.clean_temp()

    def clean_temp(self) -> int:
        """Delete the temporary files (``.<name>.tmp``) left in ``fits/`` and ``curves/``, and
        the write checks left in the survey's folder; returns how many. Only a survey run's
        driver writes there, and it calls this before it writes, so no writer is using them."""
        removed = 0
        for folder, prefix in ((self.fits_dir, "."), (self.curves_dir, "."),
                               (self.artifacts_dir, "."),
                               (self.root, _WRITE_CHECK)):
            for info in _list(self.fs, folder):
                if (info.type == pafs.FileType.File and info.base_name.startswith(prefix)
                        and info.base_name.endswith(".tmp")):
                    self.fs.delete_file(info.path)
                    removed += 1
        return removed

    # -- reading ---------------------------------------------------------------------------

    def _exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The fits table (all rows written so far); empty, with the schema, when none."""
        if not self._exists(self.fits_dir):
            table = FITS_SCHEMA.empty_table()
        else:
            dataset = ds.dataset(
                self.fits_dir, format="parquet", filesystem=self.fs, schema=FITS_SCHEMA
            )
            table = dataset.to_table()
        return table.select(list(columns)) if columns is not None else table

    def read_fits(self) -> pd.DataFrame:
        """The fits table as a DataFrame."""
        return self.read_table().to_pandas()

    def read_curves(self) -> pd.DataFrame:
        """The curves table as a DataFrame."""
        if not self._exists(self.curves_dir):
            return CURVES_SCHEMA.empty_table().to_pandas()
        dataset = ds.dataset(
            self.curves_dir, format="parquet", filesystem=self.fs, schema=CURVES_SCHEMA
        )
        return dataset.to_table().to_pandas()

    def statuses(self) -> dict[str, str]:
        """``{fit_id: status}`` of every fit written so far."""
        table = self.read_table(["fit_id", "status"])
        return dict(zip(table["fit_id"].to_pylist(), table["status"].to_pylist(), strict=True))

    def exists(self) -> bool:
        """Whether any fit of this survey has been written."""
        return self._exists(self.fits_dir)
