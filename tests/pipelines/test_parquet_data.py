"""A user's .parquet data file loads through the pipeline's pyarrow reader, which the entry
points that load data register (pipelines.job.readers): importing pipelines registers nothing."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mflow.config import DataSpec
from mflow.datasets import load
from pipelines.execution.survey import run_survey
from pipelines.job.readers import register_readers
from pipelines.results.store import Store
from tests.pipelines.conftest import tiny_raw

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter: nothing registered by this test session."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def _points(path: Path, n: int = 300) -> Path:
    t = np.linspace(0, 2 * np.pi, n)
    pq.write_table(pa.table({"x": np.cos(t), "y": np.sin(t)}), path)  # a circle: 1-D
    return path


def test_parquet_columns_become_features(tmp_path):
    register_readers()
    path = tmp_path / "points.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6]}), path)
    data = load(DataSpec("array", path=str(path), standardize=False))
    np.testing.assert_array_equal(data.x, [[1, 4], [2, 5], [3, 6]])


def test_non_numeric_parquet_columns_are_named(tmp_path):
    register_readers()
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "name": ["x", "y"]}), path)
    with pytest.raises(ValueError, match="name"):
        load(DataSpec("array", path=str(path)))


def test_parquet_columns_are_chosen_by_data_columns(tmp_path):
    from pipelines.job.footprint import data_points, user_rows

    register_readers()
    path = tmp_path / "table.parquet"
    pq.write_table(pa.table({"id": ["p", "q", "r"], "a": [1.0, 2.0, 3.0], "b": [4, 5, 6]}),
                   path)
    spec = DataSpec("array", path=str(path), columns=("b", "a"), standardize=False)
    np.testing.assert_array_equal(load(spec).x, [[4, 1], [5, 2], [6, 3]])
    assert data_points(spec) == (3, (2,)) and user_rows(spec) == (3, 3)  # from the footer
    with pytest.raises(ValueError, match=r"non-numeric columns: 'id'; data.columns may choose "
                                         r"among \['a', 'b'\]"):
        load(DataSpec("array", path=str(path)))
    with pytest.raises(ValueError, match=r"table.parquet: no column 'c' \(data.columns\); it "
                                         r"has 'id', 'a', 'b'"):
        load(DataSpec("array", path=str(path), columns=("a", "c")))


def test_importing_pipelines_leaves_mflow_s_readers_alone(tmp_path):
    path = _points(tmp_path / "points.parquet")
    done = _python(
        "import pipelines, pipelines.cli, pipelines.execution.trials, pipelines.execution.survey\n"
        "from mflow.config import DataSpec\n"
        "from mflow.datasets import load\n"
        "from mflow.datasets.arrays import TABLE_READERS\n"
        "print(sorted(TABLE_READERS))\n"
        f"load(DataSpec('array', path={str(path)!r}))\n"
    )
    assert done.stdout.splitlines()[0] == "[]"
    assert "reading .parquet needs a table reader" in done.stderr  # mflow alone: refused


def test_survey_validate_reads_a_parquet_file_in_a_fresh_process(tmp_path):
    job = tmp_path / "job.yaml"
    data = {"dataset": "array", "path": str(_points(tmp_path / "points.parquet")), "n": 300}
    job.write_text(yaml.safe_dump(tiny_raw("pq", data=data, grid={})))
    done = _python(f"from pipelines.cli import main; raise SystemExit(main(['validate', "
                   f"{str(job)!r}]))")
    assert done.returncode == 0, done.stderr
    pq.write_table(pa.table({"x": [1.0, 2.0], "label": ["a", "b"]}), tmp_path / "points.parquet")
    done = _python(f"from pipelines.cli import main; raise SystemExit(main(['validate', "
                   f"{str(job)!r}]))")
    assert done.returncode == 2 and "label" in done.stderr and "Traceback" not in done.stderr


def test_a_survey_trains_on_a_parquet_file_in_its_ray_workers(tmp_path, ray_local, tiny_job):
    path = _points(tmp_path / "points.parquet")
    job = tiny_job("pqrun", data={"dataset": "array", "path": str(path), "n": 300}, grid={},
                   train={"steps": 20, "log_every": 10, "batch_size": 64})
    out = str(tmp_path / "results")
    outcome = run_survey(job, out, None)
    assert outcome.counts == {"ok": 1}
    row = Store(out, "pqrun").read_fits().iloc[0]
    assert row["n"] == 300 and row["ambient_dim"] == 2
