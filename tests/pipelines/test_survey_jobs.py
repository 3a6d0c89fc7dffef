"""The job files in ``jobs/``: every one validates; each runs through the library when shrunk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mflow.fit import fit
from pipelines.job import load_job, plan

JOBS_DIR = Path(__file__).resolve().parents[2] / "jobs"
JOBS = sorted(JOBS_DIR.glob("*.yaml"))
EXPECTED = {
    "quickstart": 9,
    "paper_toys": 18,
    "fading_square": 3,
    "synthetic_mnist": 6,
    "mnist": 3,
    "mnist_digits": 30,
    "mnist_digits_scales": 80,
    "noise_floors": 30,
    "toys_baseline": 18,
    "accuracy": 17,
    "accuracy_heldout": 13,
}
NEEDS_MNIST = {"mnist", "mnist_digits", "mnist_digits_scales", "synthetic_mnist"}


IMAGE_JOBS = ("fading_square", "mnist", "mnist_digits", "synthetic_mnist")


@pytest.mark.parametrize("name", IMAGE_JOBS)
def test_image_jobs_ask_for_a_gpu_and_pack_by_its_memory(name: str):
    resources = load_job(JOBS_DIR / f"{name}.yaml").resources
    assert resources.gpu > 0 and resources.pack == "auto"


def test_an_image_job_packs_its_fits_on_a_gpu_and_runs_them_alone_on_cpus(monkeypatch):
    """``pack: auto`` resolved as ``survey run`` does (``sizing.plan_packs``), with the GPU's
    share of memory fixed: a quarter of a 48 GB GPU (cluster.yaml's L40S), or 8 GB of RAM."""
    from pipelines.execution import sizing

    job = load_job(JOBS_DIR / "fading_square.yaml", ["data.n=256"])
    fits = plan(job)
    monkeypatch.setattr(sizing, "trial_memory", lambda resources: 0.25 * 48e9)
    assert [len(pack) for pack in sizing.plan_packs(fits, job.resources)] == [len(fits)]
    on_cpus = job.resources.model_copy(update={"gpu": 0.0})
    monkeypatch.setattr(sizing, "trial_memory", lambda resources: 8e9)
    assert [len(pack) for pack in sizing.plan_packs(fits, on_cpus)] == [1] * len(fits)


def test_the_expected_jobs_are_there():
    assert {p.stem for p in JOBS} >= set(EXPECTED)


@pytest.mark.parametrize("path", JOBS, ids=[p.stem for p in JOBS])
def test_job_validates(path: Path):
    job = load_job(path)
    assert job.name == path.stem
    fits = plan(job)
    if job.name in EXPECTED:
        assert len(fits) == EXPECTED[job.name]


def test_quickstart_covers_the_three_toys_with_three_seeds():
    fits = plan(load_job(JOBS_DIR / "quickstart.yaml"))
    pairs = {(f.spec.data.dataset, f.spec.train.seed, f.spec.data.seed) for f in fits}
    assert pairs == {(d, s, s) for d in ("sine", "line", "scurve") for s in (0, 1, 2)}


def test_paper_toys_pairs_each_fit_with_its_baseline():
    fits = plan(load_job(JOBS_DIR / "paper_toys.yaml"))
    kinds = {(f.axes["variant"], f.spec.prior.kind, f.spec.model.volume_preserving) for f in fits}
    assert kinds == {("manifold", "manifold", True), ("baseline", "standard", False)}


def _mnist_dir() -> Path | None:
    candidates = [os.environ.get("MFLOW_DATA_DIR"),
                  Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"]
    for candidate in candidates:
        if candidate and Path(candidate, "train-labels-idx1-ubyte").exists():
            return Path(candidate)
        if candidate and Path(candidate, "train-labels-idx1-ubyte.gz").exists():
            return Path(candidate)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("path", JOBS, ids=[p.stem for p in JOBS])
def test_job_runs_shrunk(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The first and last fit of each job, through the library, with tiny budgets."""
    job = load_job(path)
    if job.name in NEEDS_MNIST:
        folder = _mnist_dir()
        if folder is None:
            missing = f"{path.stem} needs the MNIST files: none here (set MFLOW_DATA_DIR)"
            if os.environ.get("CI"):
                pytest.fail(f"CI: {missing}")  # CI has them: a skip there would hide the test
            pytest.skip(missing)
        monkeypatch.setenv("MFLOW_DATA_DIR", str(folder))
        monkeypatch.setenv("MFLOW_CACHE_DIR", str(tmp_path))
    fits = plan(job)
    for item in {f.fit_id: f for f in (fits[0], fits[-1])}.values():
        spec = item.spec.replace(
            data={"n": 64, "vae_steps": 5} if item.spec.data.dataset == "synthetic_mnist"
            else {"n": 64},
            train={"steps": 4, "log_every": 2, "batch_size": 16, "device": "cpu"},
        )
        result = fit(spec)
        assert result.status == "ok", f"{item.fit_id}: {result.status}: {result.error}"
        assert result.steps <= 4
