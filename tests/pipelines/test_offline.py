"""survey export / python -m mflow.batch / survey import: fits trained away from Ray."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from mlflow import MlflowClient

from mflow.batch import main as batch
from mflow.batch import read_results
from pipelines.cli import main
from pipelines.results.store import Store
from tests.pipelines.conftest import tiny_raw


def _job(tmp_path: Path, name: str) -> Path:
    raw = tiny_raw(name, train={"steps": 40, "log_every": 20, "batch_size": 64})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_exported_fits_trained_by_batch_are_stored_like_survey_run(tmp_path, capsys):
    job = _job(tmp_path, "offline")
    out, uri = str(tmp_path / "results"), f"sqlite:///{tmp_path / 'mlflow.db'}"
    plan = tmp_path / "plan.json"
    assert main(["export", str(job), "-o", str(plan), "--out", out]) == 0
    fits = json.loads(plan.read_text())["fits"]
    assert len(fits) == 4 and {"fit_id", "spec", "axes"} <= set(fits[0])
    assert batch([str(plan), "-o", str(tmp_path / "batch")]) == 0
    assert main(["import", str(job), str(tmp_path / "batch"), "--out", out,
                 "--tracking-uri", uri]) == 0
    store = Store(out, "offline")
    table = store.read_fits()
    assert sorted(table["fit_id"]) == sorted(f["fit_id"] for f in fits)
    assert set(table["status"]) == {"ok"} and set(table["steps"]) == {40}
    client = MlflowClient(uri)
    assert all(client.get_run(r).info.status == "FINISHED" for r in table["mlflow_run_id"])
    # every number exactly as the fits ended with it (mflow.batch no longer rounds)
    lines = {line["fit_id"]: line["result"] for line in read_results(tmp_path / "batch" /
                                                                       "results.jsonl.gz")}
    for row in table.itertuples():
        assert list(row.eigenvalues) == lines[row.fit_id]["eigenvalues"]
        assert row.local_dim == lines[row.fit_id]["local_dim"]
    curves = store.read_curves().sort_values(["fit_id", "step"])
    assert [list(e) for e in curves["eigenvalues"]] == [
        p["eigenvalues"] for fid in sorted(lines) for p in lines[fid]["curve"]]
    assert list(curves["loss"]) == [p["loss"] for fid in sorted(lines) for p in lines[fid]["curve"]]
    kept = store.read_artifacts(fits[0]["fit_id"])
    assert kept is not None and kept["samples"].shape == (1000, 2)
    assert Path(store.root, "summary.parquet").is_file()
    # importing again changes nothing; a fresh export has nothing left to do
    assert main(["import", str(job), str(tmp_path / "batch"), "--out", out,
                 "--tracking-uri", uri]) == 0
    assert "imported 0 fits, 4 already stored ok" in capsys.readouterr().out
    assert len(store.read_fits()) == 4
    assert main(["export", str(job), "-o", str(plan), "--out", out]) == 0
    assert json.loads(plan.read_text())["fits"] == []


def test_results_of_a_changed_job_are_refused_naming_the_line(tmp_path, capsys):
    job = _job(tmp_path, "changed")
    plan = tmp_path / "plan.json"
    assert main(["export", str(job), "-o", str(plan), "--set", "grid.seed=[0]",
                 "--set", "grid.dataset=[sine]"]) == 0
    assert batch([str(plan), "-o", str(tmp_path / "batch")]) == 0
    code = main(["import", str(job), str(tmp_path / "batch"), "--out", str(tmp_path / "r"),
                 "--set", "train.steps=41"])
    err = capsys.readouterr().err
    assert code == 2 and "results.jsonl.gz line 1" in err and "not a fit of job" in err
    assert "Traceback" not in err and not (tmp_path / "r" / "changed" / "fits").exists()
    code = main(["import", str(job), str(tmp_path / "nothing"), "--out", str(tmp_path / "r")])
    assert code == 2 and "no results file" in capsys.readouterr().err
