"""The ``survey`` command line: validate, status, and bad input (one line, exit 2, no writes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.job import load_job, plan
from pipelines.results.records import fit_record
from pipelines.results.store import Store

JOB = """\
name: clitest
data: {dataset: sine, n: 100}
grid:
  dataset: [sine, scurve]
  seed: [0, 1, 2]
train: {steps: 10, lr: 1e-3, batch_size: 50}
"""


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    path = tmp_path / "clitest.yaml"
    path.write_text(JOB)
    return path


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("MFLOW_RESULTS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)


def test_validate_prints_the_count_and_the_axes(job_file: Path, capsys):
    assert main(["validate", str(job_file)]) == 0
    out = capsys.readouterr().out
    assert "clitest: 6 fits" in out
    assert "dataset (2): sine, scurve" in out and "seed (3): 0, 1, 2" in out


def test_validate_applies_overrides_and_lists_fits(job_file: Path, capsys):
    assert main(["validate", str(job_file), "--set", "grid.seed=[5]", "--fits"]) == 0
    out = capsys.readouterr().out
    assert "clitest: 2 fits" in out
    for fit in plan(load_job(job_file, ["grid.seed=[5]"])):
        assert fit.fit_id in out


def test_status_by_name_of_a_run_with_no_fit_finished_says_it_started(tmp_path: Path, capsys):
    # A survey's first fits can take minutes: its Tune folder is there, its fits table not yet.
    (tmp_path / "results" / "early" / "tune").mkdir(parents=True)
    assert main(["status", "early"]) == 0
    assert "early: started, no fit finished yet" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["validate", "{job}", "--set", "train.stepz=3"], "error: train.stepz: unknown key"),
        (["run", "{job}", "--set", "train.lr=abc"],
         "error: train.lr: expected a number, got 'abc'"),
        (["run", "{job}", "--set", "grid.seed=[]"],
         "error: grid.seed: empty axis (no value, so no fit)"),
        (["run", "nope.yaml"], "error: nope.yaml: no such file"),
        (["status", "nosuchsurvey"], "error: nosuchsurvey: no survey of that name under results"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    job_file: Path, tmp_path: Path, capsys, args, expected
):
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([a.format(job=job_file) for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == expected
    assert "Traceback" not in captured.err + captured.out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no results, no mlflow.db


def test_a_job_file_that_is_not_text_is_one_line(tmp_path: Path, capsys):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"name: x\n\xff\xfe\x00\x01 binary")
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        f"error: {path}: not a YAML text file (byte 0xff at offset 8 is not UTF-8)"
    )
    assert "Traceback" not in captured.err + captured.out


def test_status_counts_fits_by_status(job_file: Path, tmp_path: Path, capsys):
    fits = plan(load_job(job_file))
    store = Store(tmp_path / "results", "clitest")
    store.write(fit_record("clitest", fits[0], None, error="boom"), [])
    assert main(["status", str(job_file)]) == 0
    assert "clitest: 6 fits: 1 failed, 5 pending" in capsys.readouterr().out
    assert main(["status", "clitest"]) == 0
    assert "clitest: 1 fits: 1 failed" in capsys.readouterr().out


def test_console_script_runs(job_file: Path):
    """The installed ``survey`` entry point, as a user types it."""
    survey = Path(sys.executable).with_name("survey")
    assert survey.exists(), f"{survey}: the survey console script is not installed"
    done = subprocess.run(
        [str(survey), "validate", str(job_file), "--set", "train.nope=1"],
        capture_output=True, text=True, env={**os.environ}, timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: train.nope: unknown key"]


def test_python_dash_m_pipelines_cli_is_the_survey_command(repo_root):
    """``survey submit`` starts runs on a cluster as ``python -m pipelines.cli``."""
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "validate",
                           "jobs/quickstart.yaml"], cwd=repo_root, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "quickstart: 9 fits" in done.stdout


def test_progress_off_a_terminal_is_one_line_per_finished_fit(job_file: Path):
    # `ray job logs` and log files cannot redraw a bar: each fit's end is a line of its own.
    import io

    from rich.console import Console

    from pipelines.cli.progress import ProgressReporter

    fits = plan(load_job(job_file, []))
    out = io.StringIO()
    reporter = ProgressReporter(Console(file=out, force_terminal=False, width=200))
    reporter.planned(len(fits), 2)
    for fit in fits[:2]:
        reporter.started(fit)
    reporter.ended(fits[0], "ok", 1, None)
    reporter.ended(fits[1], "failed", None, "boom")
    reporter.stop()
    lines = out.getvalue().splitlines()
    assert lines[0] == "6 fits: 4 done before, 2 to run"
    first = next(line for line in lines if line.startswith("[1/2]"))
    # counts of failed and diverged fits show once above 0: a line fits 80 columns
    assert first.startswith(f"[1/2] {fits[0].fit_id} ok estimate 1; running 1; ")
    assert "failed" not in first and "diverged" not in first
    assert any(line.startswith(f"[2/2] {fits[1].fit_id} failed; running 0, failed 1; ")
               and "ETA 0:00:00" in line for line in lines)
    assert all(len(line) <= 80 for line in lines if line.startswith("["))
