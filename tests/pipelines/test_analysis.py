"""Aggregation of a hand-made fits table into the summary, and readouts redone with other rules."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mflow.fit import FitResult
from pipelines.analysis.readouts import AnalysisError, recompute, recompute_curves
from pipelines.analysis.stored import read_summary, update_summary, write_summary
from pipelines.analysis.summary import group_id, summarize
from pipelines.cli import main
from pipelines.job import parse_job, plan
from pipelines.results import load
from pipelines.results.records import curve_rows, fit_record
from pipelines.results.store import Store

# floor = sigma2 + noise_floor**2 = 1e-6 + 1e-4 (the defaults); the threshold rule's cut is at
# 20 * floor = 2.02e-3, so the estimates below are what the threshold rule reads.
SPECTRA = {
    ("sine", 0): ("ok", [1.0, 1e-4]),  # 1
    ("sine", 1): ("ok", [2.0, 1e-4]),  # 1
    ("sine", 2): ("ok", [0.5, 1e-2]),  # 2 (gap: 2; threshold x 1000: 1)
    ("sine", 3): ("diverged", [math.nan, math.nan]),
    ("sine", 4): ("failed", None),
    ("scurve", 0): ("ok", [1.0, 0.5, 5e-3]),  # 3 (gap: 2)
    ("scurve", 1): ("ok", [1.2, 0.6, 1e-5]),  # 2 (gap: 2)
    ("scurve", 2): ("ok", [0.8, 0.4, 1e-5]),  # 2
    ("scurve", 3): ("ok", [1.1, 0.5, 1e-5]),  # 2
    ("scurve", 4): ("ok", [0.9, 0.7, 1e-5]),  # 2
}
THRESHOLD_ESTIMATES = {"sine": [1, 1, 2], "scurve": [3, 2, 2, 2, 2]}


def ints(values) -> list[int | None]:
    """A list column as read back from Parquet (nulls are NaN there) as ints and Nones."""
    return [None if pd.isna(v) else int(v) for v in values]


def job(name: str = "hand"):
    raw = {"name": name, "data": {"n": 100}, "train": {"steps": 10, "log_every": 5},
           "grid": {"dataset": ["sine", "scurve"], "seed": [0, 1, 2, 3, 4]}}
    return parse_job(raw)


def result(dataset: str, seed: int) -> FitResult | None:
    status, spectrum = SPECTRA[dataset, seed]
    if status == "failed":
        return None
    return FitResult(
        status=status, error=None if status == "ok" else "loss became NaN", steps=10,
        id_estimate=THRESHOLD_ESTIMATES[dataset][seed] if status == "ok" else None,
        id_rule="threshold", eigenvalues=tuple(spectrum),
        curve=(), n=100, ambient_dim=len(spectrum), true_dim={"sine": 1, "scurve": 2}[dataset],
        wall_s=1.0 + seed, device="cpu", diverged_step=3 if status == "diverged" else None,
    )


def hand_made(tmp_path: Path, name: str = "hand") -> tuple[Store, list]:
    fits = plan(job(name))
    store = Store(tmp_path / "results", name)
    for fit in fits:
        res = result(fit.spec.data.dataset, fit.spec.train.seed)
        error = "boom" if res is None else None
        store.write(fit_record(name, fit, res, error=error), curve_rows(name, fit.fit_id, res))
    return store, fits


def test_summary_of_a_hand_made_table_has_known_medians_spreads_and_counts(tmp_path: Path):
    store, fits = hand_made(tmp_path)
    summary = summarize(store.read_fits(), fit_ids=[f.fit_id for f in fits])
    assert list(summary["group"]) == ["dataset=sine", "dataset=scurve"]  # the plan's order
    sine, scurve = (row for row in summary.to_dict("records"))

    assert (sine["fits"], sine["ok"], sine["diverged"], sine["failed"]) == (5, 3, 1, 1)
    assert ints(sine["estimates"]) == [1, 1, 2, None, None]
    assert ints(sine["seeds"]) == [0, 1, 2, 3, 4]
    assert (sine["estimate"], sine["estimate_min"], sine["estimate_max"]) == (1.0, 1, 2)
    assert (scurve["estimate"], scurve["estimate_min"], scurve["estimate_max"]) == (2.0, 2, 3)
    assert sine["true_dim"] == 1 and scurve["true_dim"] == 2
    assert sine["rule"] == "threshold" and sine["threshold"] == 20.0
    assert sine["floor"] == pytest.approx(1e-6 + 1e-4)

    # Ranked eigenvalues over the ok fits: median and 10%-90% band, rank by rank.
    top = np.array([1.0, 2.0, 0.5])
    assert sine["eig_median"][0] == pytest.approx(1.0)
    assert sine["eig_q10"][0] == pytest.approx(np.quantile(top, 0.1))
    assert sine["eig_q90"][0] == pytest.approx(np.quantile(top, 0.9))
    assert sine["eig_median"][1] == pytest.approx(1e-4)
    assert len(scurve["eig_median"]) == 3

    # The gap at the cut: median over the ok fits of log(l_k + f) - log(l_k+1 + f).
    f = 1e-6 + 1e-4
    gaps = [math.log(1 + f) - math.log(1e-4 + f), math.log(2 + f) - math.log(1e-4 + f),
            math.log(1e-2 + f) - math.log(f)]
    assert sine["gap"] == pytest.approx(float(np.median(gaps)))
    assert sine["wall_s"] == pytest.approx(2.5)  # median of 1..4: the failed fit has no time
    assert sine["group_id"] == group_id("dataset=sine")


def test_recompute_with_another_rule_needs_no_refit(tmp_path: Path):
    store, fits = hand_made(tmp_path)
    table = store.read_fits()

    gap = summarize(table, rule="gap").set_index("group")
    assert ints(gap.loc["dataset=scurve", "estimates"]) == [2, 2, 2, 2, 2]
    assert gap.loc["dataset=scurve", "estimate_max"] == 2
    assert gap.loc["dataset=sine", "rule"] == "gap"
    assert pd.isna(gap.loc["dataset=sine", "threshold"])

    strict = summarize(table, rule="threshold", threshold=1000.0).set_index("group")
    assert ints(strict.loc["dataset=sine", "estimates"]) == [1, 1, 1, None, None]
    assert strict.loc["dataset=sine", "threshold"] == 1000.0

    # The stored estimates are untouched; a diverged fit stays without an estimate.
    redone = recompute(table, "gap")
    diverged = redone[redone["status"] == "diverged"]
    assert diverged["id_estimate"].isna().all()
    assert table["id_rule"].eq("threshold").all()

    # The logged steps' estimates too (for the trajectories of a report with another rule).
    seed2 = table[(table["dataset"] == "sine") & (table["seed"] == 2)]["fit_id"].iloc[0]
    curves = pd.DataFrame({"fit_id": [seed2, seed2], "step": [5, 10], "estimate": [2, 2],
                           "eigenvalues": [[3.0, 0.2], [0.5, 1e-2]]})
    assert recompute_curves(curves, table, "threshold", 1000.0)["estimate"].tolist() == [2, 1]
    assert recompute_curves(curves, table) is curves

    with pytest.raises(AnalysisError, match="unknown readout rule 'elbow'"):
        summarize(table, rule="elbow")
    with pytest.raises(AnalysisError, match="only with --rule threshold"):
        summarize(table, rule="gap", threshold=5.0)


def test_grouping_by_named_axes(tmp_path: Path):
    store, _ = hand_made(tmp_path)
    table = store.read_fits()
    pooled = summarize(table, group_by=[])
    assert len(pooled) == 1 and pooled.loc[0, "fits"] == 10 and pooled.loc[0, "ok"] == 8
    assert pd.isna(pooled.loc[0, "dataset"])  # varies within the group
    bydata = summarize(table, group_by=["dataset"])
    # Without a plan the groups are sorted by their axis values.
    assert list(bydata["group"]) == ["dataset=scurve", "dataset=sine"]
    assert pd.isna(pooled.loc[0, "true_dim"])  # 1 and 2 pooled: no single truth
    with pytest.raises(AnalysisError, match="no grid axis .class."):
        summarize(table, group_by=["class"])


def test_summary_round_trip_results_api_and_analyze_command(tmp_path: Path, capsys):
    store, fits = hand_made(tmp_path, "round")
    written = update_summary(store, [f.fit_id for f in fits])
    back = read_summary(store)
    assert back is not None and list(back["group"]) == list(written["group"])
    assert not [p for p in Path(store.root).iterdir() if p.name.startswith(".")]  # no temp

    tables = load("round", out=tmp_path / "results")
    assert len(tables.fits) == 10 and len(tables.summary) == 2
    assert tables.baselines.empty and tables.curves.empty

    out = str(tmp_path / "results")
    assert main(["analyze", "round", "--out", out, "--rule", "gap"]) == 0
    printed = capsys.readouterr().out
    assert "scurve" in printed and "summary.parquet" in printed
    redone = read_summary(store).set_index("group")
    assert set(redone["rule"]) == {"gap"}
    assert ints(redone.loc["dataset=scurve", "estimates"]) == [2, 2, 2, 2, 2]

    assert main(["analyze", "round", "--out", out, "--rule", "gap", "--threshold", "3"]) == 2
    assert "error: --threshold" in capsys.readouterr().err
    assert main(["analyze", "nope", "--out", out]) == 2
    write_summary(store, written)  # and back


def test_empty_table_gives_an_empty_summary_with_the_schema():
    frame = summarize(pd.DataFrame(columns=["fit_id", "config", "status"]), fit_ids=[])
    assert frame.empty and {"estimate", "eig_median", "gap"} <= set(frame.columns)


def test_analyze_of_a_job_file_groups_as_the_job_says(tmp_path: Path):
    store, _ = hand_made(tmp_path, "grouped")
    job_file = tmp_path / "grouped.yaml"
    raw = dict(job("grouped").raw, analysis={"group_by": ["seed"]})
    job_file.write_text(yaml.safe_dump(raw))
    out = str(tmp_path / "results")
    assert main(["analyze", str(job_file), "--out", out]) == 0
    assert list(read_summary(store)["group"]) == [f"seed={s}" for s in range(5)]
    assert main(["analyze", str(job_file), "--out", out, "--group-by", "dataset"]) == 0
    assert list(read_summary(store)["group"]) == ["dataset=sine", "dataset=scurve"]  # flag wins


def test_analyze_of_a_changed_job_refuses_rather_than_writing_an_empty_summary(tmp_path, capsys):
    store, _ = hand_made(tmp_path, "changed")
    before = update_summary(store)
    job_file = tmp_path / "changed.yaml"
    job_file.write_text(yaml.safe_dump(dict(job("changed").raw, train={"steps": 11})))
    assert main(["analyze", str(job_file), "--out", str(tmp_path / "results")]) == 2
    assert "none of its 10 fits is stored" in capsys.readouterr().err
    assert len(read_summary(store)) == len(before) == 2  # left as it was


def curved_store(tmp_path: Path, name: str = "curved") -> tuple[Store, list]:
    """The hand-made table, the scurve fits with a local dimension of 2.1 (issue 16)."""
    import dataclasses

    fits = plan(job(name))
    store = Store(tmp_path / "results", name)
    for fit in fits:
        res = result(fit.spec.data.dataset, fit.spec.train.seed)
        if res is not None and res.status == "ok" and fit.spec.data.dataset == "scurve":
            rank = res.id_estimate
            res = dataclasses.replace(res, id_rank=rank, id_estimate=min(rank, 2),
                                      local_dim=2.1, local_dim_spread=0.3, local_rule="mle-cal")
        store.write(fit_record(name, fit, res, error=None if res else "boom"),
                    curve_rows(name, fit.fit_id, res))
    return store, fits


def test_a_group_below_its_rank_is_flagged_curved_and_keeps_both_numbers(tmp_path: Path):
    """Issue 16: fits that need 3 flat dimensions but are locally 2.1-dimensional read 2,
    keep the rank and the local dimension as columns, and their group is flagged curved."""
    from pipelines.analysis.summary import curved_note

    store, fits = curved_store(tmp_path)
    table = store.read_fits()
    curved_fits = table[table["dataset"] == "scurve"]
    assert set(curved_fits["local_rule"]) == {"mle-cal"} and set(curved_fits["id_rank"]) == {2, 3}
    summary = summarize(table, fit_ids=[f.fit_id for f in fits])
    sine, scurve = summary.to_dict("records")
    assert (scurve["estimate"], scurve["rank"], scurve["local_dim"]) == (2.0, 2.0, 2.1)
    assert scurve["local_dim_spread"] == pytest.approx(0.3)
    assert not scurve["curved"]  # the median rank is 2 here: no disagreement
    assert pd.isna(sine["rank"]) and pd.isna(sine["curved"])  # recorded without the numbers
    # Read again with a stricter threshold: every rank is 3, the local dimension still 2.1.
    strict = summarize(table, rule="threshold", threshold=1e-3, fit_ids=[f.fit_id for f in fits])
    scurve = strict.to_dict("records")[1]
    assert (scurve["rank"], scurve["estimate"], scurve["curved"]) == (3.0, 2.0, True)
    assert curved_note(scurve["rank"], scurve["local_dim"], scurve["estimate"]) == (
        "needs 3 flat dimensions; locally 2.1-dimensional: curved or closed")


def test_the_report_shows_the_rank_and_the_local_dimension_and_flags_a_curved_group(tmp_path):
    import dataclasses

    from pipelines.report.build import build_report

    store, fits = curved_store(tmp_path)
    table = store.read_fits()
    # Make the scurve group's median rank 3 (one fit read 3, four read 2): all read 3 now.
    for fit_id in table.loc[table["dataset"] == "scurve", "fit_id"]:
        fit = next(f for f in fits if f.fit_id == fit_id)
        res = result("scurve", fit.spec.train.seed)
        res = dataclasses.replace(res, id_rank=3, id_estimate=2, local_dim=2.1,
                                  local_dim_spread=0.3, local_rule="mle-cal")
        store.write(fit_record("curved", fit, res), curve_rows("curved", fit_id, res))
    report = build_report(store, fit_ids=[f.fit_id for f in fits], baselines=False,
                          use_ray=False)
    text = Path(report.index).read_text()
    assert re.search(r"<th>rank</th>\s*<th>local</th>", text) and "<td>2.1±0.3 *</td>" in text
    assert "needs 3 flat dimensions; locally 2.1-dimensional: curved or closed" in text
    assert bool(report.summary.set_index("group").loc["dataset=scurve", "curved"])
