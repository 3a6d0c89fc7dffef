"""The report folder: self-contained HTML whose every image exists, logged to MLflow."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest
import torch
from mlflow import MlflowClient

from mflow.config import ModelSpec, PriorSpec
from mflow.fit import CurvePoint, FitResult, fit_artifacts
from mflow.model import ManifoldFlow
from pipelines.cli import main
from pipelines.job import parse_job, plan
from pipelines.report import data_plots, plots
from pipelines.report.build import _upload, build_report
from pipelines.report.page import html_table, latex_table
from pipelines.results import load
from pipelines.results.records import curve_rows, fit_record
from pipelines.results.store import Store


def tiny_raw(name: str) -> dict:
    return {
        "name": name,
        "description": "Sine (true 1) and S-curve (true 2), two seeds, tiny budgets.",
        "data": {"n": 300},
        "grid": {"dataset": ["sine", "scurve"], "seed": [0, 1]},
        "train": {"steps": 60, "log_every": 20, "batch_size": 64},
    }


def result(dataset: str, seed: int) -> FitResult:
    """A made-up fit that ended ok: a spectrum with a clear cut after the true dimension."""
    true = {"sine": 1, "scurve": 2}[dataset]
    dim = true + 1
    spectrum = tuple([1.0 + 0.1 * seed] * true + [1e-4 * (1 + seed)] * (dim - true))
    curve = tuple(
        CurvePoint(step=step, loss=2.0 - step / 30, noise_std=0.01, lr=1e-3,
                   estimate=true if step > 20 else dim,
                   eigenvalues=tuple(v * (1 + (60 - step) / 60) for v in spectrum))
        for step in (20, 40, 60)
    )
    return FitResult(status="ok", error=None, steps=60, id_estimate=true, id_rule="threshold",
                     eigenvalues=spectrum, curve=curve, n=300, ambient_dim=dim, true_dim=true,
                     wall_s=1.0, device="cpu")


def fitted(tmp_path: Path, name: str) -> tuple[Store, list, Path]:
    """A stored survey of made-up fits, as ``survey run`` stores them (no training)."""
    raw = tiny_raw(name)
    job_file = tmp_path / f"{name}.yaml"
    job_file.write_text(json.dumps(raw))  # JSON is YAML
    fits = plan(parse_job(raw))
    store = Store(tmp_path / "results", name)
    for f in fits:
        res = result(f.spec.data.dataset, f.spec.train.seed)
        store.write(fit_record(name, f, res), curve_rows(name, f.fit_id, res))
    return store, fits, job_file


def images_of(index: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', index.read_text())


def test_report_folder_is_self_contained_and_logged_to_mlflow(tmp_path: Path):
    store, fits, _ = fitted(tmp_path, "rep")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("rep", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(experiment, tags={"kind": "survey-run"}).info.run_id
    client.set_terminated(parent, "FINISHED")

    report = build_report(store, fit_ids=[f.fit_id for f in fits], description="tiny",
                          estimators=("TwoNN", "MLE"), use_ray=False, tracking_uri=uri)
    index = Path(report.index)
    assert index == Path(store.root) / "report" / "index.html" and index.is_file()
    folder = index.parent
    images = images_of(index)
    assert images and len(images) == 1 + 3 * 2  # estimates, then spectrum/trajectory/data
    for src in images:
        assert not src.startswith(("/", "http")) and (folder / src).is_file(), src
    for name in ("summary.csv", "baselines.csv", "table.tex"):
        assert (folder / name).is_file()
    text = index.read_text()
    assert "http://" not in text and "https://" not in text  # readable offline
    for needle in ("dataset=sine", "dataset=scurve", "TwoNN", "MLE", "tiny", "true"):
        assert needle in text
    assert r"\begin{tabular}" in (folder / "table.tex").read_text()

    # Our estimate, the baselines and the true dimension side by side, per group.
    assert list(report.summary["true_dim"]) == [1, 2]
    assert set(report.baselines["estimator"]) == {"TwoNN", "MLE"}
    assert (Path(store.root) / "summary.parquet").is_file()
    assert len(report.baselines) == 4 and len(list((Path(store.root) / "baselines").iterdir())) == 2

    assert report.mlflow_run_id == parent
    logged = {a.path for a in client.list_artifacts(parent)}
    assert {"report", "summary.parquet"} <= logged
    assert "report/index.html" in {a.path for a in client.list_artifacts(parent, "report")}

    tables = load("rep", out=tmp_path / "results")
    assert len(tables.fits) == 4 and len(tables.summary) == 2 and len(tables.baselines) == 4
    assert set(tables.curves["step"]) == {20, 40, 60}


def test_report_command_on_a_job_file(tmp_path: Path, capsys):
    store, fits, job_file = fitted(tmp_path, "cmd")
    out = str(tmp_path / "results")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["report", str(job_file), "--out", out, "--tracking-uri", uri, "--no-baselines",
            "--rule", "gap"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "report:" in captured.out and "cmd: estimated dimension" in captured.out
    assert "no survey run of 'cmd'" in captured.out  # not logged: no MLflow parent run
    index = Path(store.root) / "report" / "index.html"
    for src in images_of(index):
        assert (index.parent / src).is_file()
    summary = pd.read_parquet(Path(store.root) / "summary.parquet")
    assert set(summary["rule"]) == {"gap"}

    assert main(["report", "nothing-here", "--out", out, "--no-baselines"]) == 2
    assert "error: nothing-here: no fits stored" in capsys.readouterr().err
    assert main(["report", str(job_file), "--out", out, "--estimators", "PCA"]) == 2
    assert "error: --estimators: unknown 'PCA'" in capsys.readouterr().err


@pytest.mark.slow
def test_survey_run_then_report_end_to_end(tmp_path: Path, ray_local, capsys):
    """Real fits on a local Ray, then the report of the job file (about a minute)."""
    raw = tiny_raw("e2e-report")
    job_file = tmp_path / "e2e.yaml"
    job_file.write_text(json.dumps(raw))
    common = ["--out", str(tmp_path / "results"), "--tracking-uri",
              f"sqlite:///{tmp_path / 'mlflow.db'}"]
    assert main(["run", str(job_file), *common]) == 0
    root = tmp_path / "results" / "e2e-report"
    assert (root / "summary.parquet").is_file()  # written at the end of the run
    assert main(["report", str(job_file), *common, "--estimators", "TwoNN,MLE"]) == 0
    assert "logged to MLflow run" in capsys.readouterr().out
    index = root / "report" / "index.html"
    for src in images_of(index):
        assert (index.parent / src).is_file()
    assert any(src.endswith("-model.png") for src in images_of(index))  # samples, projection


def test_model_figures_from_kept_artifacts():
    """Samples and the latent projection of a model, drawn from what a fit keeps."""
    torch.manual_seed(0)
    for shape in ((3,), (2,), (5,), (1, 8, 8)):
        x = torch.rand(200, *shape)
        model = ManifoldFlow.build(ModelSpec(kind="conv" if len(shape) == 3 else "mlp",
                                             couplings=2, conv_levels=1), PriorSpec(), shape)
        for k in (1, 2):
            kept = fit_artifacts(model, x, k, seed=0)
            assert kept["projection"].shape == (200, k)
            data = plots.png(data_plots.model_figure(x.numpy(), kept, "t"))
            assert data.startswith(b"\x89PNG")
    grid = data_plots.image_grid_figure(np.random.default_rng(0).uniform(size=(5, 1, 8, 8)), "x")
    assert plots.png(grid).startswith(b"\x89PNG")


def old_report(store: Store) -> Path:
    folder = Path(store.root) / "report"
    (folder / "figures").mkdir(parents=True)
    (folder / "index.html").write_text("old report")
    (folder / "figures" / "gone.png").write_bytes(b"old figure")
    return folder


def new_report(tmp_path: Path) -> Path:
    local = tmp_path / "local" / "report"
    (local / "figures").mkdir(parents=True)
    for name in ("index.html", "summary.csv", "figures/a.png", "figures/b.png"):
        (local / name).write_text(f"new {name}")
    return local


@pytest.mark.parametrize("uri", [False, True], ids=["path", "file-uri"])
def test_a_report_replaces_the_old_one_whole(tmp_path: Path, uri: bool):
    store = Store(tmp_path.as_uri() if uri else tmp_path, "swap")
    folder = old_report(store)
    assert _upload(store, new_report(tmp_path)) == f"{store.root}/report/index.html"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) \
        == ["figures/a.png", "figures/b.png", "index.html", "summary.csv"]
    assert (folder / "index.html").read_text() == "new index.html"
    assert sorted(p.name for p in Path(store.root).iterdir()) == ["report"]  # no temp folders


def test_an_object_store_gets_the_new_report_whole(tmp_path: Path):
    """Where folders cannot be renamed (a filesystem other than the local one), the staged
    files are copied over the old ones."""
    store = Store(tmp_path, "swap")
    folder = old_report(store)
    store.fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    store.root = "swap"
    assert _upload(store, new_report(tmp_path)) == "swap/report/index.html"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) \
        == ["figures/a.png", "figures/b.png", "index.html", "summary.csv"]
    assert sorted(p.name for p in (tmp_path / "swap").iterdir()) == ["report"]


def test_a_failed_upload_leaves_the_old_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = Store(tmp_path, "swap")
    folder = old_report(store)
    local = new_report(tmp_path)
    real = Path.read_bytes
    calls = []

    def failing(path: Path) -> bytes:
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", failing)
    with pytest.raises(OSError, match="disk full"):
        _upload(store, local)
    assert (folder / "index.html").read_text() == "old report"
    assert (folder / "figures" / "gone.png").read_bytes() == b"old figure"
    assert sorted(p.name for p in Path(store.root).iterdir()) == ["report"]


# -- the templates, the escaping and the shared spectrum figure -------------------------------


def test_user_strings_are_escaped_in_the_page_and_in_the_latex(tmp_path: Path):
    store, fits, _ = fitted(tmp_path, "two_moons")
    report = build_report(store, fit_ids=[f.fit_id for f in fits], baselines=False,
                          use_ray=False, description="<b>bold</b> & <script>x</script>")
    page = Path(report.index).read_text()
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;x&lt;/script&gt;" in page
    assert "<b>bold" not in page and "<script>" not in page
    tex = (Path(report.index).parent / "table.tex").read_text()
    assert r"\caption{two\_moons: intrinsic dimension" in tex and "two_moons" not in tex

    headers = ["noise_floor", "true", "ours", "by seed", "settled", "ok/div/fail", "TwoNN"]
    rows = [["a_b & 50% #1", "–", "2 [1–3] (unsettled)", "1 ·", "0/2", "2/0/0", "x<y"]]
    table = latex_table(headers, rows)
    lines = table.splitlines()
    assert lines[0] == r"\begin{tabular}{lrrr}" and lines[1] == r"\toprule"
    assert lines[2] == r"noise\_floor & true & ours & TwoNN \\"  # page-only columns left out
    assert lines[4] == r"a\_b \& 50\% \#1 & -- & 2 [1--3] (unsettled) & x<y \\"
    assert lines[-2:] == [r"\bottomrule", r"\end{tabular}"]
    html = html_table(headers, rows)
    assert "<td>a_b &amp; 50% #1</td>" in html and "<td>x&lt;y</td>" in html
    assert "<th>noise_floor</th>" in html and "<th>by seed</th>" in html


def test_the_templates_ship_as_package_data():
    """A non-editable install finds the templates: pyproject's package-data covers every file
    in pipelines/report/templates/."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["pipelines.report"]
    package = root / "pipelines" / "report"
    shipped = sorted(p.relative_to(package).as_posix() for p in (package / "templates").iterdir())
    assert {"templates/report.html.j2", "templates/report.tex.j2"} <= set(shipped)
    for name in shipped:
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name


def test_the_data_figure_of_a_parquet_file_is_drawn_from_python(tmp_path: Path):
    """``build_report`` called from Python, in a fresh interpreter (nothing registered), draws
    the data of a job whose data file is Parquet."""
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    t = np.linspace(0, 2 * np.pi, 300)
    path = tmp_path / "circle.parquet"
    pq.write_table(pa.table({"x": np.cos(t), "y": np.sin(t)}), path)
    raw = {**tiny_raw("pq"), "data": {"dataset": "array", "path": str(path), "n": 300},
           "grid": {"seed": [0, 1]}}
    store = Store(tmp_path / "results", "pq")
    fits = plan(parse_job(raw))
    for f in fits:
        res = result("sine", f.spec.train.seed)
        store.write(fit_record("pq", f, res), curve_rows("pq", f.fit_id, res))
    code = ("from pipelines.report.build import build_report\n"
            "from pipelines.results.store import Store\n"
            f"report = build_report(Store({str(tmp_path / 'results')!r}, 'pq'), "
            "baselines=False, use_ray=False)\n"
            "print(report.warnings)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"  # no "data not drawn" warning
    images = images_of(Path(store.root) / "report" / "index.html")
    assert sum(src.endswith("-data.png") for src in images) == 1


def test_a_fit_s_mlflow_spectrum_is_the_report_s_figure(monkeypatch: pytest.MonkeyPatch):
    """``tracking.spectrum_png`` draws with ``plots.spectrum_figure``: the fit's spectrum, the
    noise floor its readout uses, the threshold and the cut after its estimate."""
    from mflow.readout import readout_floor
    from pipelines.results.fit_run import spectrum_png

    drawn = []
    real = plots.spectrum_figure

    def spy(*args, **kwargs):
        drawn.append(real(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(plots, "spectrum_figure", spy)
    fit = next(f for f in plan(parse_job(tiny_raw("spectrum")))
               if f.axes == {"dataset": "scurve", "seed": 1})
    res = result("scurve", 1)
    assert spectrum_png(fit, res).startswith(b"\x89PNG") and len(drawn) == 1
    ax = drawn[0].axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    floor = readout_floor(fit.spec)
    assert list(lines["cut"].get_xdata()) == [2.5, 2.5]
    assert lines[f"noise floor {floor:.2g}"].get_ydata()[0] == pytest.approx(floor)
    assert lines[f"threshold {fit.spec.readout.threshold:g} × floor"].get_ydata()[0] \
        == pytest.approx(fit.spec.readout.threshold * floor)
    assert list(lines["seed 1"].get_ydata()) == pytest.approx(res.eigenvalues)
    assert drawn[0]._suptitle.get_text().startswith(f"{fit.fit_id}: estimate 2")
    assert "(true 2)" in drawn[0]._suptitle.get_text()
