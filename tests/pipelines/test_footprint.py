"""A job's footprint is known from its spec before anything is allocated (issue 28): the
model's parameters counted without building it, the data's size without making or reading
them, ``survey validate`` prints it, and neither ``validate`` nor ``run`` makes a dataset to
check a job (a few points at most)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mflow.config import DataSpec, FitSpec, ModelSpec, PriorSpec
from mflow.datasets import registry
from mflow.model import ManifoldFlow
from pipelines.cli import main
from pipelines.execution import cluster
from pipelines.job import footprint
from pipelines.job.datafiles import SAMPLE_POINTS


@pytest.fixture(autouse=True)
def _here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("MFLOW_RESULTS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cluster, "init_ray", _no_ray)


def _no_ray(address=None):
    raise AssertionError("Ray was started")


def job(tmp: Path, **data) -> Path:
    path = tmp / "job.yaml"
    path.write_text(json.dumps({"name": "sizes", "data": {"dataset": "sine", **data},
                                "grid": {"seed": [0, 1]}, "train": {"steps": 10}}))
    return path


@pytest.mark.parametrize(
    ("model", "prior", "shape"),
    [
        (ModelSpec(), PriorSpec(), (2,)),
        (ModelSpec(couplings=3, hidden=7, depth=1), PriorSpec(kind="standard"), (5,)),
        (ModelSpec(kind="conv"), PriorSpec(), (1, 32, 32)),
        (ModelSpec(kind="conv", couplings=0, conv_levels=1, conv_depth=1), PriorSpec(),
         (1, 28, 28)),
    ],
)
def test_the_parameters_are_counted_without_building_the_model(model, prior, shape):
    built = ManifoldFlow.build(model, prior, shape)
    assert footprint.model_parameters(model, prior, shape) == sum(
        p.numel() for p in built.parameters()
    )


def test_the_data_size_comes_from_the_spec_and_a_file_header(tmp_path: Path):
    fp = footprint.footprint(FitSpec(data=DataSpec("scurve", n=1000)))
    assert (fp.points, fp.shape, fp.data_bytes) == (1000, (3,), 1000 * 3 * (8 + 4 + 4))
    sphere = footprint.footprint(FitSpec(data=DataSpec("sphere", n=10, latent_dim=3,
                                                       ambient_dim=50)))
    assert (sphere.shape, sphere.rotation_bytes) == ((50,), 3 * 50 * 50 * 8)
    np.save(tmp_path / "x.npy", np.zeros((300, 4, 5), dtype=np.float32))
    array = footprint.footprint(FitSpec(data=DataSpec("array", n=100,
                                                      path=str(tmp_path / "x.npy"))))
    assert (array.points, array.shape) == (100, (1, 4, 5))
    np.savez(tmp_path / "x.npz", a=np.zeros((7, 3)), b=np.zeros((9, 2)))
    member = footprint.footprint(FitSpec(data=DataSpec("array", key="b",
                                                       path=str(tmp_path / "x.npz"))))
    assert (member.points, member.shape) == (9, (2,))


def test_validate_prints_the_footprint(tmp_path: Path, capsys):
    assert main(["validate", str(job(tmp_path, n=2000))]) == 0
    out = capsys.readouterr().out
    assert ("footprint of the largest fit: data 0.06 MB (2000 points x 2 dimensions), model "
            "10,388 parameters (162 KiB with gradients and Adam's moments); this machine has "
            in out)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_no_dataset_is_made_to_check_a_job(command: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys):
    """A job whose data fit in memory: the check makes a few points, never ``data.n``; one
    whose data do not: refused before the loader is called at all."""
    asked: list[int] = []
    sine = registry.DATASETS["sine"]

    def counting(spec: DataSpec):
        asked.append(spec.n)
        return sine(spec)

    monkeypatch.setitem(registry.DATASETS, "sine", counting)
    monkeypatch.setattr(footprint, "machine_memory", lambda: 8 * 2**30)
    if command == "validate":
        assert main(["validate", str(job(tmp_path, n=50_000_000))]) == 0
        assert asked and max(asked) <= SAMPLE_POINTS
    asked.clear()
    assert main([command, str(job(tmp_path, n=1_000_000_000))]) == 2
    assert asked == []
    err = capsys.readouterr().err
    assert err.startswith("error: data.n: 1000000000 is too large: 1000000000 points x 2 "
                          "dimensions x 16 bytes")
    assert "Traceback" not in err


def test_validate_says_how_many_of_a_files_rows_are_trained_on_and_held_out(tmp_path: Path,
                                                                            capsys):
    points = tmp_path / "points.npy"
    np.save(points, np.random.default_rng(0).standard_normal((2500, 3)))
    assert main(["validate", str(job(tmp_path, dataset="array", path=str(points)))]) == 0
    out = capsys.readouterr().out.replace("\n  ", " ")
    assert (f"{points}: trains on 2,300 of 2,500 rows and holds 200 out for the Jacobian "
            "readout") in out
    assert "(2300 points x 3 dimensions)" in out  # the footprint counts the rows trained on
    assert main(["validate", str(job(tmp_path, dataset="array", path=str(points), n=2000))]) == 0
    assert (f"{points}: trains on 2,000 of 2,500 rows (data.n) and holds 200 out for the "
            "Jacobian readout") in capsys.readouterr().out.replace("\n  ", " ")
    assert main(["validate", str(job(tmp_path, dataset="array", path=str(points), n=2500))]) == 0
    assert (f"{points}: trains on 2,500 of 2,500 rows; none are held out, so the Jacobian "
            "readout reads training rows") in capsys.readouterr().out.replace("\n  ", " ")


def test_validate_reads_an_image_folder_from_its_headers(tmp_path: Path, capsys):
    from PIL import Image

    folder = tmp_path / "pictures"
    for label in ("0", "1"):
        (folder / label).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / label / f"{i}.png")
    spec = DataSpec("images", path=str(folder), classes=(1,))
    assert footprint.data_points(spec) == (5, (3, 8, 8))
    assert footprint.user_rows(DataSpec("images", path=str(folder), n=4)) == (10, 4)
    assert footprint.user_rows(DataSpec("images", path=str(folder))) == (10, 9)
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps({
        "name": "pictures", "data": {"dataset": "images", "path": str(folder)},
        "grid": {"class": [0, 1]}, "model": {"kind": "conv", "conv_levels": 1},
        "train": {"steps": 10, "batch_size": 4}}))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out.replace("\n  ", " ")
    assert "(5 points x 192 dimensions)" in out
    assert f"{folder}: trains on 5 of 5 images of classes 1; none are held out" in out
    (folder / "1" / "4.png").write_bytes(b"broken")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{folder / '1' / '4.png'}: not a readable PNG or JPEG image" in err
    assert "Traceback" not in err


def test_a_cluster_run_checks_memory_on_the_cluster_not_here(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    """``survey run --address``: this machine's memory does not decide (the fits run on the
    cluster's nodes); the files are still checked here."""
    from pipelines.job import load_job, plan
    from pipelines.job.datafiles import check_data
    from pipelines.job.errors import JobError

    monkeypatch.setattr(footprint, "machine_memory", lambda: 8 * 2**30)
    fits = plan(load_job(job(tmp_path, n=1_000_000_000)))
    with pytest.raises(JobError, match="more than this machine's 8 GiB"):
        check_data(fits)
    check_data(fits, local=False)  # no refusal for memory here
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((300, 2), np.nan))
    with pytest.raises(JobError, match="bad.npy"):
        check_data(plan(load_job(job(tmp_path, dataset="array", path=str(bad)))), local=False)


def test_fits_larger_than_every_node_of_a_joined_cluster_are_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_local):
    """On a joined cluster a fit larger than its largest node now is warned about by id (an
    autoscaling cluster may still start a larger node), a fit that fits is not."""
    from pipelines.execution import survey
    from pipelines.job import load_job, plan

    largest = cluster.largest_node_memory()
    assert largest is not None and 0 < largest <= footprint.machine_memory() * 2
    small = plan(load_job(job(tmp_path, n=2000)))
    huge = plan(load_job(job(tmp_path, n=int(largest // 16) + 1)))
    warned: list[str] = []
    reporter = survey.Reporter()
    monkeypatch.setattr(reporter, "warn", warned.append)
    survey._check_node_memory(small + huge, reporter)
    assert [w.split(":")[0] for w in warned] == [fit.fit_id for fit in huge]
    assert "more than the cluster's largest node now's" in warned[0]
    assert warned[0].endswith("it fails unless a larger node joins")
