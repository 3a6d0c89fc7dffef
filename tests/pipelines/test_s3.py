"""``--out s3://...`` against a real S3 API on the loopback (moto in server mode).

pyarrow's S3 filesystem, which the store and Ray Tune both use, takes the endpoint from
``AWS_ENDPOINT_URL`` (as the AWS command line does), so no code path here is special to tests.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from pipelines.cli import main
from pipelines.job import parse_job, plan
from pipelines.results import load
from pipelines.results import store as store_module
from pipelines.results.records import fit_record
from pipelines.results.store import Store

ROOT = Path(__file__).resolve().parents[2]
SURVEY = Path(sys.executable).parent / "survey"
BUCKET = "surveys"
OUT = f"s3://{BUCKET}/results"
JOB = {
    "name": "on-s3",
    "data": {"dataset": "sine", "n": 200},
    "grid": {"seed": [0, 1]},
    "train": {"steps": 60, "log_every": 20, "batch_size": 32},
    "resources": {"cpu": 1, "retries": 0},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free loopback port with one empty bucket; yields the environment
    (credentials, region, endpoint) that points pyarrow at it."""
    pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.2)
        os.environ.update(env)
        pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"],
                          allow_bucket_creation=True).create_dir(BUCKET)
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.terminate()
        server.wait(timeout=30)


def _files(fs: pafs.FileSystem, root: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path[len(root) + 1:] for i in infos if i.type == pafs.FileType.File)


def test_a_survey_on_s3_has_the_layout_and_reads_back(s3, tmp_path: Path, capsys):
    job_file = tmp_path / "on-s3.yaml"
    job_file.write_text(json.dumps(JOB))  # JSON is YAML
    env = {**os.environ, **s3, "PATH": f"{SURVEY.parent}:{os.environ['PATH']}"}
    run = subprocess.run(
        [str(SURVEY), "run", str(job_file), "--out", OUT,
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    fits = plan(parse_job(JOB))
    store = Store(OUT, JOB["name"])
    files = _files(store.fs, store.root)
    for fit in fits:
        assert f"fits/{fit.fit_id}.parquet" in files
        assert f"curves/{fit.fit_id}.parquet" in files
    assert "summary.parquet" in files
    assert not [f for f in files if f.endswith(".tmp") or "/." in f or f.startswith(".")]
    assert not [f for f in files if f.startswith("tune/")]  # checkpoints of stored fits pruned

    assert main(["status", str(job_file), "--out", OUT]) == 0
    assert "2 fits: 2 ok" in capsys.readouterr().out

    results = load(JOB["name"], out=OUT)
    assert sorted(results.fits["fit_id"]) == sorted(f.fit_id for f in fits)
    assert set(results.fits["status"]) == {"ok"}
    assert results.fits["mlflow_run_id"].notna().all()
    assert sorted(results.curves.groupby("fit_id")["step"].max()) == [60, 60]
    assert len(results.summary) == 1


def test_on_s3_a_failed_write_leaves_nothing_and_a_crashed_one_is_cleared(
    s3, monkeypatch: pytest.MonkeyPatch
):
    job = parse_job({**JOB, "name": "s3-writes"})
    first, second = plan(job)
    store = Store(OUT, job.name)
    store.prepare()
    store.write(fit_record(job.name, first, None, error="x"), [])

    write = store_module.pq.write_table

    def write_then_fail(table, where, **kwargs):
        write(table, where, **kwargs)  # the temporary object is complete on S3 ...
        raise OSError("connection reset")  # ... and the upload is then lost

    monkeypatch.setattr(store_module.pq, "write_table", write_then_fail)
    with pytest.raises(OSError, match="connection reset"):
        store.write(fit_record(job.name, second, None, error="x"), [])
    monkeypatch.undo()
    assert store.statuses() == {first.fit_id: "failed"}
    assert not [f for f in _files(store.fs, store.root) if second.fit_id in f]

    # A writer killed between the upload and the rename leaves its temporary object: readers
    # skip it, and the next survey run's prepare deletes it.
    crashed = f"{store.fits_dir}/.{second.fit_id}.parquet.0123abcd.tmp"
    write(store_module.pa.Table.from_pylist(
        [fit_record(job.name, second, None, error="x")], schema=store_module.FITS_SCHEMA),
        crashed, filesystem=store.fs)
    assert store.statuses() == {first.fit_id: "failed"}
    assert store.prepare() == 1
    assert _files(store.fs, store.fits_dir) == [f"{first.fit_id}.parquet"]
