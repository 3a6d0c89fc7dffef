"""Whether each fit settled, through the pipeline: the fits table, MLflow, the summary, the
report, and stored files from before the criterion existed."""

from __future__ import annotations

import gzip
import json
import math
import re
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow import MlflowClient

from mflow.fit import CurvePoint, FitResult
from pipelines.analysis.columns import SUMMARY_SCHEMA
from pipelines.analysis.stored import read_summary, update_summary
from pipelines.analysis.summary import summarize
from pipelines.cli import main
from pipelines.execution.checkpoints import result_from_dict, result_to_dict
from pipelines.job import parse_job, plan
from pipelines.report import plots
from pipelines.report.build import build_report, table_rows
from pipelines.results import load
from pipelines.results.backfill import result_from_row
from pipelines.results.records import FITS_SCHEMA, curve_rows, fit_record
from pipelines.results.store import Store
from pipelines.results.tracking import Tracker

SETTLE_COLUMNS = ["settled", "settle_stable_steps", "settle_drift", "settle_margin"]
SUMMARY_COLUMNS = ["answer", "settled", "settled_fits", "settled_per_fit"]
TRUE = {"sine": 1, "scurve": 2, "line": 1}
# Per (dataset, seed): the fit's verdict, (settled, stable steps, drift, margin); None: a fit
# recorded before the criterion. sine settled (its diverged fit does not count: no estimate),
# scurve has one unsettled fit, line was never judged.
VERDICTS = {
    ("sine", 0): (True, 400, 1.1, 8.0),
    ("sine", 1): (True, 300, 1.3, 5.0),
    ("sine", 2): (False, 0, math.inf, 0.0),  # diverged
    ("scurve", 0): (True, 400, 1.2, 6.0),
    ("scurve", 1): (False, 100, math.inf, 1.5),
    ("scurve", 2): (True, 500, 1.0, 9.0),
    ("line", 0): None,
    ("line", 1): None,
    ("line", 2): None,
}


def raw(name: str) -> dict:
    return {"name": name, "data": {"n": 300},
            "grid": {"dataset": ["sine", "scurve", "line"], "seed": [0, 1, 2]},
            "train": {"steps": 60, "log_every": 20, "batch_size": 64}}


def result(dataset: str, seed: int) -> FitResult:
    true = TRUE[dataset]
    spectrum = tuple([1.0 + 0.1 * seed] * true + [1e-5])
    curve = tuple(CurvePoint(step=s, loss=-1.0, noise_std=0.01, lr=1e-3, estimate=true,
                             eigenvalues=spectrum) for s in (20, 40, 60))
    verdict = VERDICTS[dataset, seed]
    settled, stable, drift, margin = verdict if verdict is not None else (None,) * 4
    diverged = dataset == "sine" and seed == 2
    return FitResult(
        status="diverged" if diverged else "ok", error="loss became NaN" if diverged else None,
        steps=60, id_estimate=None if diverged else true, id_rule="threshold",
        eigenvalues=spectrum, curve=curve, n=300, ambient_dim=true + 1, true_dim=true,
        wall_s=1.0, device="cpu", diverged_step=50 if diverged else None, settled=settled,
        settle_stable_steps=stable, settle_drift=drift, settle_margin=margin,
    )


def stored(tmp_path: Path, name: str) -> tuple[Store, list]:
    """A survey of made-up fits with known verdicts, stored as ``survey run`` stores them."""
    fits = plan(parse_job(raw(name)))
    store = Store(tmp_path / "results", name)
    for f in fits:
        res = result(f.spec.data.dataset, f.spec.train.seed)
        store.write(fit_record(name, f, res), curve_rows(name, f.fit_id, res))
    return store, fits


def by_group(summary: pd.DataFrame) -> dict[str, dict]:
    return {row["group"].removeprefix("dataset="): row for row in summary.to_dict("records")}


# -- the fits table --------------------------------------------------------------------------


def test_a_stored_fit_row_carries_the_verdict_and_its_figures(tmp_path: Path):
    store, fits = stored(tmp_path, "rows")
    failed = fit_record("rows", fits[0], None, error="boom")
    assert all(failed[c] is None for c in SETTLE_COLUMNS)

    types = {c: pq.read_schema(store.fit_path(fits[0].fit_id)).field(c).type
             for c in SETTLE_COLUMNS}
    assert types == {"settled": pa.bool_(), "settle_stable_steps": pa.int64(),
                     "settle_drift": pa.float64(), "settle_margin": pa.float64()}
    frame = pd.read_parquet(Path(store.fits_dir)).set_index(["dataset", "seed"])
    assert frame.loc[("scurve", 0), SETTLE_COLUMNS].tolist() == [True, 400, 1.2, 6.0]
    unsettled = frame.loc[("scurve", 1)]
    assert unsettled["settled"] == False  # noqa: E712 - a numpy bool
    assert math.isinf(unsettled["settle_drift"]) and unsettled["settle_margin"] == 1.5
    assert frame.loc[("line", 0), SETTLE_COLUMNS].isna().all()  # recorded before the criterion


def test_a_result_round_trips_through_json_and_parquet_with_its_verdict(tmp_path: Path):
    store, fits = stored(tmp_path, "trip")
    unsettled = result("scurve", 1)
    assert result_from_dict(json.loads(json.dumps(result_to_dict(unsettled)))) == unsettled
    older = {k: v for k, v in result_to_dict(unsettled).items() if k not in SETTLE_COLUMNS}
    assert result_from_dict(older).settled is None  # a checkpoint written before the criterion

    rows = {(r["dataset"], r["seed"]): r for r in store.read_table().to_pylist()}
    curves = store.read_curves().to_dict("records")
    row = rows["scurve", 1]
    back = result_from_row(row, [p for p in curves if p["fit_id"] == row["fit_id"]])
    assert back == unsettled  # what `survey sync-mlflow` records is what was stored


def test_older_files_without_the_columns_still_load(tmp_path: Path):
    store, fits = stored(tmp_path, "old")
    old_schema = pa.schema([f for f in FITS_SCHEMA if f.name not in SETTLE_COLUMNS])
    for f in fits[:4]:  # rewrite some rows as a survey run before the criterion wrote them
        rows = [{k: v for k, v in r.items() if k not in SETTLE_COLUMNS}
                for r in pq.read_table(store.fit_path(f.fit_id)).to_pylist()]
        pq.write_table(pa.Table.from_pylist(rows, schema=old_schema), store.fit_path(f.fit_id))
    assert not set(SETTLE_COLUMNS) & set(pd.read_parquet(store.fit_path(fits[0].fit_id)))

    table = store.read_fits()
    assert len(table) == 9 and set(SETTLE_COLUMNS) <= set(table.columns)
    old_ids = {f.fit_id for f in fits[:4]}
    assert table.loc[table["fit_id"].isin(old_ids), "settled"].isna().all()
    assert table.loc[~table["fit_id"].isin(old_ids), "settled"].notna().sum() == 2  # scurve 1, 2
    assert len(pd.read_parquet(Path(store.fits_dir))) == 9  # pandas reads the mixed folder
    row = store.read_table().to_pylist()[0]
    assert result_from_row(row, []) is not None

    # An old summary.parquet too (without the summary's new columns): read with nulls there.
    update_summary(store, [f.fit_id for f in fits])
    path = Path(store.root, "summary.parquet")
    pq.write_table(pq.read_table(path).drop_columns(SUMMARY_COLUMNS), path)
    back = read_summary(store)
    assert back is not None and set(SUMMARY_COLUMNS) <= set(back.columns)
    assert back["settled"].isna().all() and back["answer"].isna().all()
    tables = load("old", out=tmp_path / "results")
    assert len(tables.fits) == 9 and len(tables.summary) == 3
    headers, rows = table_rows(tables.summary)  # and an old summary still prints
    assert all("(not judged)" in r[headers.index("ours")] for r in rows)


# -- the summary -----------------------------------------------------------------------------


def test_summary_counts_settled_fits_and_withholds_an_unsettled_answer(tmp_path: Path):
    store, fits = stored(tmp_path, "summary")
    summary = summarize(store.read_fits(), fit_ids=[f.fit_id for f in fits])
    sine, scurve, line = (by_group(summary)[k] for k in ("sine", "scurve", "line"))

    assert (sine["settled"], sine["settled_fits"], sine["ok"]) == (True, 2, 2)
    assert sine["answer"] == sine["estimate"] == 1.0
    assert list(sine["settled_per_fit"]) == [True, True, None]  # the diverged fit: none

    assert (scurve["settled"], scurve["settled_fits"], scurve["ok"]) == (False, 2, 3)
    assert scurve["estimate"] == 2.0 and pd.isna(scurve["answer"])  # kept, but not an answer
    assert list(scurve["settled_per_fit"]) == [True, False, True]

    assert pd.isna(line["settled"]) and line["settled_fits"] == 0  # never judged
    assert line["estimate"] == 1.0 and pd.isna(line["answer"])

    written = update_summary(store, [f.fit_id for f in fits])
    back = by_group(pd.read_parquet(Path(store.root, "summary.parquet")))
    assert back["scurve"]["settled"] == False and pd.isna(back["scurve"]["answer"])  # noqa: E712
    assert back["sine"]["answer"] == 1.0 and len(written) == 3


def test_a_readout_redone_keeps_a_verdict_only_where_the_estimate_is_unchanged(tmp_path: Path):
    store, _ = stored(tmp_path, "reread")
    same = by_group(summarize(store.read_fits(), rule="threshold", threshold=20.0))
    assert same["sine"]["settled"] == True and same["sine"]["answer"] == 1.0  # noqa: E712
    moved = by_group(summarize(store.read_fits(), rule="threshold", threshold=1e9))
    assert moved["sine"]["estimate"] == 0.0  # every eigenvalue under the cut now
    assert pd.isna(moved["sine"]["settled"]) and pd.isna(moved["sine"]["answer"])
    assert pd.isna(moved["scurve"]["settled"])  # judged at a cut no longer used: not judged


# -- the report and the console --------------------------------------------------------------


def test_the_report_marks_an_unsettled_group_wherever_its_estimate_appears(tmp_path: Path,
                                                                           capsys):
    store, fits = stored(tmp_path, "marked")
    report = build_report(store, fit_ids=[f.fit_id for f in fits], baselines=False,
                          use_ray=False)
    folder = Path(report.index).parent
    text = re.sub(r">\s+<", "><", Path(report.index).read_text())  # pandas indents tables
    rows = {r.split("</td>")[0].removeprefix("<td>"): r
            for r in text.split("<tr>") if r.startswith("<td>")}
    assert "<td>2 (unsettled)</td>" in rows["scurve"] and "<td>2/3</td>" in rows["scurve"]
    assert "<td>1</td>" in rows["sine"] and "unsettled" not in rows["sine"]
    assert "(not judged)" in rows["line"]
    assert "1 of 3 groups settled" in text
    # The group's own section: the estimate marked, and a table of its fits' figures.
    section = text.split('id="dataset-scurve')[1].split("<h3")[0]
    assert "<td>estimate</td><td>2 (unsettled)</td>" in section
    assert "<td>settled</td><td>2 of 3 ok fits</td>" in section
    assert "<th>drift</th><th>margin</th>" in section
    scurve1 = next(f.fit_id for f in fits if f.axes == {"dataset": "scurve", "seed": 1})
    assert f"<td>{scurve1}</td><td>1</td><td>ok</td><td>2</td><td>no</td><td>100</td>" \
           f"<td>∞</td><td>1.5</td>" in section
    assert "(unsettled)" in (folder / "table.tex").read_text()

    # The figures: our bar of scurve hollow and hatched; the spectrum's title says so.
    summary = report.summary
    ours = plots.estimates_figure(summary).axes[0].patches[: len(summary)]
    assert [bar.get_hatch() for bar in ours] == [None, "////", "...."]
    legend = plots.estimates_figure(summary.iloc[::-1]).axes[0].get_legend()
    entries = {t.get_text(): h for t, h in zip(legend.get_texts(), legend.legend_handles,
                                               strict=True)}
    assert entries["ours"].get_hatch() is None and entries["ours (unsettled)"].get_hatch()
    scurve = summary.to_dict("records")[1]
    title = plots.spectrum_figure(scurve, [[1.0, 1.0, 1e-5]])._suptitle.get_text()
    assert "(unsettled)" in title

    # The printed summary (`survey analyze` and `survey run` print the same table).
    assert main(["analyze", "marked", "--out", str(tmp_path / "results")]) == 0
    printed = capsys.readouterr().out
    assert "2 (unsettled)" in printed and "settled" in printed


# -- MLflow and survey import ----------------------------------------------------------------


def test_a_fits_mlflow_run_has_the_verdict_as_metrics(tmp_path: Path):
    fits = {tuple(f.axes.values()): f for f in plan(parse_job(raw("tracked")))}
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "tracked")
    unsettled = tracker.log_fit(fits["scurve", 1], result("scurve", 1))
    settled = tracker.log_fit(fits["sine", 0], result("sine", 0))
    unjudged = tracker.log_fit(fits["line", 0], result("line", 0))
    metrics = {run: tracker.client.get_run(run).data.metrics
               for run in (unsettled, settled, unjudged)}
    assert metrics[unsettled]["settled"] == 0.0
    assert metrics[unsettled]["settle_drift"] == sys.float_info.max  # inf, logged finite
    assert metrics[unsettled]["settle_margin"] == 1.5
    assert metrics[unsettled]["settle_stable_steps"] == 100.0
    assert metrics[settled]["settled"] == 1.0 and metrics[settled]["settle_drift"] == 1.1
    assert not set(SETTLE_COLUMNS) & set(metrics[unjudged])  # nothing to log: none logged


def test_survey_import_keeps_the_verdict_and_reads_older_batch_output(tmp_path: Path):
    job = tmp_path / "imported.yaml"
    job.write_text(json.dumps(raw("imported")))
    out, uri = str(tmp_path / "results"), f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["export", str(job), "-o", str(tmp_path / "plan.json"), "--out", out]) == 0
    lines = []
    for fit in json.loads((tmp_path / "plan.json").read_text())["fits"]:
        res = result_to_dict(result(fit["axes"]["dataset"], fit["axes"]["seed"]))
        if fit["axes"]["dataset"] == "line":  # written by mflow.batch before the criterion
            res = {k: v for k, v in res.items() if k not in SETTLE_COLUMNS}
        elif res["settle_drift"] == math.inf:
            res["settle_drift"] = None  # mflow.batch writes no infinity (JSON has none)
        lines.append(json.dumps({"survey": "imported", "fit_id": fit["fit_id"],
                                 "spec": fit["spec"], "result": res}))
    (tmp_path / "batch").mkdir()
    with gzip.open(tmp_path / "batch" / "results.jsonl.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    assert main(["import", str(job), str(tmp_path / "batch"), "--out", out,
                 "--tracking-uri", uri]) == 0
    store = Store(out, "imported")
    table = store.read_fits().set_index(["dataset", "seed"])
    assert table.loc[("scurve", 1), ["settled", "settle_stable_steps"]].tolist() == [False, 100]
    assert table.loc[("scurve", 0), "settle_margin"] == 6.0
    assert table.loc[("line", 0), SETTLE_COLUMNS].isna().all()
    run = MlflowClient(uri).get_run(table.loc[("scurve", 1), "mlflow_run_id"])
    assert run.data.metrics["settled"] == 0.0
    summary = by_group(read_summary(store))
    assert summary["scurve"]["settled"] == False and summary["sine"]["settled"] == True  # noqa: E712


def test_summary_schema_has_the_settling_columns():
    assert {n: SUMMARY_SCHEMA.field(n).type for n in SUMMARY_COLUMNS} == {
        "answer": pa.float64(), "settled": pa.bool_(), "settled_fits": pa.int64(),
        "settled_per_fit": pa.list_(pa.bool_())}
