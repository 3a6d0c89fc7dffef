"""The Parquet store of a survey: one file per fit, written atomically by the driver only
(the rows: ``pipelines.results.records``).

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
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mflow.files import atomic_write
from pipelines.job import Fit, JobError, check_name, legacy_fit_id
from pipelines.results.records import CURVES_SCHEMA, FITS_SCHEMA

__all__ = ["Store"]

_WRITE_CHECK = ".write-check."  # prefix of the file Store.prepare writes and deletes


def _list(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    try:
        return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return []


# The URI schemes of a results folder: those pyarrow's FileSystem.from_uri opens (a local
# path needs none).
OUT_SCHEMES = ("file", "local", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def _filesystem(out: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path of the results folder ``out``; a ``JobError`` naming the
    URI and the schemes that work for an unknown scheme or a malformed URI."""
    out = os.fspath(out)
    if "://" not in out:
        return pafs.LocalFileSystem(), os.path.abspath(out)
    scheme = out.split("://", 1)[0]
    schemes = ", ".join(f"{s}://" for s in OUT_SCHEMES)
    if scheme.lower() not in OUT_SCHEMES:
        raise JobError(
            f"results folder {out!r} (--out): unknown scheme {scheme!r}; use a local path or "
            f"a URI of {schemes}"
        )
    try:
        return pafs.FileSystem.from_uri(out)
    except pa.ArrowInvalid as exc:
        raise JobError(f"results folder {out!r} (--out): {exc}") from None


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

    def started(self) -> bool:
        """Whether a run of this survey has begun (its Tune folder is there), fits or none."""
        return self._exists(self.tune_path)
