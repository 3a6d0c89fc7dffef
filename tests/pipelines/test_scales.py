"""Dimension across scales in the pipeline: scales.parquet, the summary's scale readout and
``survey analyze --rule scale``, from hand-made fits whose spectra follow a known law."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mflow.fit import FitResult
from pipelines.analysis.readouts import AnalysisError
from pipelines.analysis.scales import scales_table
from pipelines.analysis.stored import read_scales, read_summary
from pipelines.analysis.summary import summarize
from pipelines.cli import main
from pipelines.job import parse_job, plan
from pipelines.results.records import curve_rows, fit_record
from pipelines.results.store import Store

FLOORS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]  # sigma_x, 300x
NOISE = {"sine": 0.01, "line": None}  # the data's own noise std: a noisy and a clean case
DIM, TRUE = 6, 2
SIGMA2 = 1e-6  # the default spread variance


def spectrum(dataset: str, floor: float, seed: int) -> list[float]:
    """Eigenvalues of a d-manifold in R^D seen at data-noise floor ``floor``: two directions
    at the data's variance, D - d at the noise's (the data's own plus the floor's), each
    stretched by a seed-dependent factor the volume-preserving flow may trade between them."""
    t = floor**2
    s2 = (NOISE[dataset] or 0.0) ** 2
    rng = np.random.default_rng([seed, int(floor * 1e4)])
    stretch = np.exp(rng.normal(0.0, 0.3, DIM))
    values = np.array([1.0, 0.5] + [s2 + t] * (DIM - TRUE)) * stretch
    return sorted(values.tolist(), reverse=True)


def make_store(tmp_path: Path, name: str = "scales", seeds=(0, 1, 2)) -> tuple[Store, list]:
    raw = {"name": name, "data": {"n": 100}, "train": {"steps": 10, "log_every": 5},
           "grid": {"dataset": ["sine", "line"], "noise_floor": FLOORS, "seed": list(seeds)}}
    fits = plan(parse_job(raw))
    store = Store(tmp_path / "results", name)
    for fit in fits:
        eig = spectrum(fit.spec.data.dataset, fit.spec.train.noise_floor, fit.spec.train.seed)
        cut = 20 * (SIGMA2 + fit.spec.train.noise_floor**2)
        res = FitResult(
            status="ok", error=None, steps=10, id_estimate=int(sum(e > cut for e in eig)),
            id_rule="threshold", eigenvalues=tuple(eig), curve=(), n=100, ambient_dim=DIM,
            true_dim=TRUE, wall_s=1.0, device="cpu", settled=True,
        )
        store.write(fit_record(name, fit, res), curve_rows(name, fit.fit_id, res))
    return store, fits


def test_the_summary_reads_the_dimension_and_the_noise_scale_across_floors(tmp_path: Path):
    store, fits = make_store(tmp_path)
    summary = summarize(store.read_fits(), fit_ids=[f.fit_id for f in fits])
    assert len(summary) == 12  # two families x six floors
    noisy = summary[summary["dataset"] == "sine"]
    clean = summary[summary["dataset"] == "line"]
    # The threshold rule, floor by floor: full-dimensional well below the noise, 2 above it.
    assert noisy["estimate"].iloc[0] == DIM and noisy["estimate"].iloc[-2] == TRUE
    assert set(clean["estimate"].iloc[:-1]) == {TRUE}
    # One readout per family, the same on each of its rows.
    assert set(noisy["id_scale"]) == {TRUE} and set(clean["id_scale"]) == {TRUE}
    assert noisy["id_scale_min"].iloc[0] == TRUE and noisy["id_scale_max"].iloc[0] == TRUE
    scale = noisy["noise_scale"].iloc[0]
    assert NOISE["sine"] / 2 < scale < NOISE["sine"] * 2
    assert clean["noise_scale"].isna().all()  # no noise scale within the floors probed
    # It holds from above the noise to the coarsest floor; on clean data at every floor.
    assert noisy["scale_low"].iloc[0] >= 0.01 and noisy["scale_high"].iloc[0] == pytest.approx(
        0.3, rel=1e-3)
    assert clean["scale_low"].iloc[0] == pytest.approx(0.001, rel=0.01)


def test_scales_table_has_a_row_per_floor_and_the_finite_difference_readings(tmp_path: Path):
    store, fits = make_store(tmp_path)
    summary = summarize(store.read_fits(), fit_ids=[f.fit_id for f in fits])
    table = scales_table(summary)
    assert len(table) == 12 and list(table["family"].unique()) == ["dataset=sine",
                                                                    "dataset=line"]
    noisy = table[table["family"] == "dataset=sine"]
    assert list(noisy["noise_floor"]) == FLOORS
    assert noisy["settled"].all() and (noisy["ok"] == 3).all()
    # Between floors: full-dimensional at the finest pair, the true dimension at the coarsest.
    assert noisy["scale_dim"].iloc[0] > DIM - 1 and abs(noisy["scale_dim"].iloc[-2] - TRUE) < 0.5
    assert pd.isna(noisy["scale_dim"].iloc[-1])  # no coarser floor to pair with
    assert noisy["scale_at"].iloc[0] == pytest.approx((0.001 * 0.003) ** 0.5, rel=0.01)


def test_analyze_rule_scale_gives_one_row_per_family_and_writes_scales_parquet(
        tmp_path: Path, capsys):
    store, _ = make_store(tmp_path, "cli")
    out = str(tmp_path / "results")
    assert main(["analyze", "cli", "--out", out, "--rule", "scale"]) == 0
    printed = capsys.readouterr().out
    assert "scales.parquet" in printed
    summary = read_summary(store)
    assert len(summary) == 2 and set(summary["rule"]) == {"scale"}
    assert list(summary["estimate"]) == [TRUE, TRUE] and summary["noise_floor"].isna().all()
    assert (summary["fits"] == 18).all()
    scales = read_scales(store)
    assert scales is not None and len(scales) == 12

    assert main(["analyze", "cli", "--out", out]) == 0  # back to one row per floor
    assert len(read_summary(store)) == 12


def test_rule_scale_needs_a_noise_floor_axis_and_enough_floors(tmp_path: Path):
    store, fits = make_store(tmp_path)
    table = store.read_fits()
    with pytest.raises(AnalysisError, match="no noise_floor axis"):
        summarize(table, rule="scale", group_by=["dataset"])
    two = table[table["noise_floor"].isin(FLOORS[:2])]
    summary = summarize(two)
    assert summary["id_scale"].isna().all()  # two floors: too few to read across
    with pytest.raises(AnalysisError, match="only with --rule threshold"):
        summarize(table, rule="scale", threshold=5.0)


def test_the_report_draws_one_curve_per_family_and_tabulates_the_readout(tmp_path: Path):
    from pipelines.report.build import build_report

    store, fits = make_store(tmp_path, "drawn")
    report = build_report(store, fit_ids=[f.fit_id for f in fits], baselines=False,
                          use_ray=False, rule="scale")
    folder = Path(report.index).parent
    page = (folder / "index.html").read_text()
    assert "Dimension across scales" in page and "figures/scales.png" in page
    assert (folder / "figures" / "scales.png").stat().st_size > 10_000
    assert "dataset=sine" in page and "σx=0.001" in page
    assert len(report.summary) == 2 and len(read_scales(store)) == 12


def test_the_scales_plot_goes_logarithmic_only_when_its_readings_span_a_decade(tmp_path: Path):
    """Image surveys read a handful per floor and hundreds from the log-volume between floors:
    on a linear axis the per-floor curves would lie flat, so the axis turns logarithmic."""
    from pipelines.report.plots import scales_figure

    store, fits = make_store(tmp_path, "axes")
    table = scales_table(summarize(store.read_fits(), fit_ids=[f.fit_id for f in fits]))
    narrow = scales_figure(table).axes[0].get_yscale()
    wide = table.assign(scale_dim=table["scale_dim"] * 100)
    assert narrow == "linear"
    assert scales_figure(wide).axes[0].get_yscale() == "log"
