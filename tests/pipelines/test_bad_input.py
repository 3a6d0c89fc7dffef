"""Bad input, through the real ``survey`` command: refused with one line that names the key,
value or file, exit code 2, no traceback, nothing run and nothing written; ``survey validate``
and ``survey run`` say the same. Hostile input (YAML tags, pickles) is refused, never run.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from mflow.config import DataSpec, FitSpec
from mflow.datasets import mnist
from mflow.fit import Trainer
from pipelines.cli import main
from pipelines.execution import cluster
from pipelines.job import footprint

BASE = {
    "name": "badinput",
    "data": {"dataset": "sine", "n": 200},
    "grid": {"seed": [0, 1]},
    "train": {"steps": 10, "batch_size": 32},
}


def job(tmp: Path, monkeypatch: pytest.MonkeyPatch | None = None, **blocks) -> Path:
    """A job file: ``BASE`` with ``blocks`` replacing whole top-level keys."""
    path = tmp / "job.yaml"
    path.write_text(json.dumps({**BASE, **blocks}))  # JSON is YAML
    return path


def array_file(tmp: Path, x: np.ndarray, name: str = "points.npy") -> Path:
    path = tmp / name
    np.save(path, x, allow_pickle=x.dtype == object)
    return path


def nan_rows(tmp: Path) -> Path:
    x = np.random.default_rng(0).standard_normal((200, 3))
    x[3, 0] = x[17, 2] = np.nan
    x[40, 1] = np.inf
    return array_file(tmp, x)


def tiny_mnist(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Hand-made MNIST files with labels 0..3, verified against their own checksums."""
    root = tmp / "mnist"
    root.mkdir()
    sums = {}
    for split, n in (("train", 80), ("test", 8)):
        images, labels = mnist.FILES[split]
        pixels = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
        for name, array in ((images, pixels), (labels, (np.arange(n) % 4).astype(np.uint8))):
            sums[name] = mnist.idx_sha256(mnist.write_idx(root / name, array))
    monkeypatch.setattr(mnist, "CHECKSUMS", sums)
    monkeypatch.setattr(mnist, "MIRRORS", ())  # no download attempts
    return root


def arrays(path: Callable[[Path], Path]) -> Callable:
    """A job over the array file that ``path(tmp)`` writes."""
    return lambda tmp, mp: job(tmp, data={"dataset": "array", "path": str(path(tmp)), "n": 200})


# id -> (make the job file: (tmp, monkeypatch) -> path, --set overrides, expected message;
# "{tmp}" in the message stands for the test's folder).
CASES: dict[str, tuple[Callable, list[str], str]] = {
    "unknown key": (job, ["train.stepz=3"], "train.stepz: unknown key"),
    "unknown top-level key": (
        lambda tmp, mp: job(tmp, gird={"seed": [0]}), [], "gird: unknown key"),
    "wrong type": (job, ["train.steps=ten"], "train.steps: expected an integer, got 'ten'"),
    "wrong type in a grid axis": (
        lambda tmp, mp: job(tmp, grid={"seed": [0, "one"]}), [],
        "grid.seed[1]: expected an integer, got 'one'"),
    "unknown dataset": (
        job, ["data.dataset=cifar10"],
        "data.dataset: unknown dataset 'cifar10'; known: affine, array, fading_square, helix, "
        "hypercube, images, line, mnist, moving_glyph, scurve, sine, sphere, swiss_roll, "
        "synthetic_mnist, torus, warped_subspace"),
    "missing data file": (
        lambda tmp, mp: job(tmp, data={"dataset": "array", "path": str(tmp / "gone.npy")}), [],
        "{tmp}/gone.npy: no such file (data.path)"),
    "NaN or inf in the data": (
        arrays(nan_rows), [],
        "{tmp}/points.npy: 3 of 200 rows contain NaN or inf (first: row 3, counting from 0); "
        "remove or fill them (grid point {'seed': 0})"),
    "array of rank 1": (
        arrays(lambda tmp: array_file(tmp, np.zeros(200))), [],
        "{tmp}/points.npy: array of shape (200,) (rank 1); expected (n, D) vectors, or "
        "(n, H, W) or (n, C, H, W) images"),
    "array of rank 5": (
        arrays(lambda tmp: array_file(tmp, np.zeros((200, 1, 2, 2, 2)))), [],
        "(rank 5); expected (n, D) vectors"),
    "array that needs unpickling": (
        arrays(lambda tmp: array_file(tmp, np.array([{"a": 1}] * 200, dtype=object))), [],
        "{tmp}/points.npy: cannot be read without pickle"),
    "zero noise floor": (job, ["train.noise_floor=0"], "train.noise_floor: must be > 0, got 0.0"),
    "negative noise floor in the grid": (
        lambda tmp, mp: job(tmp, grid={"noise_floor": [0.01, -0.01]}), [],
        "grid.noise_floor[1]: must be > 0, got -0.01"),
    "zero sigma2": (job, ["prior.sigma2=0"], "prior.sigma2: must be > 0, got 0.0"),
    "negative sigma2 in a zipped axis": (
        lambda tmp, mp: job(tmp, grid={"variant": [{"label": "a", "prior.sigma2": 1e-6},
                                                   {"label": "b", "prior.sigma2": -1e-6}]}),
        [], "grid.variant[1].prior.sigma2: must be > 0, got -1e-06"),
    "NaN value": (job, ["train.lr=.nan"], "train.lr: must be a finite number, got nan"),
    "empty grid axis": (job, ["grid.seed=[]"], "grid.seed: empty axis (no value, so no fit)"),
    "YAML that does not parse": (
        lambda tmp, mp: write(tmp / "job.yaml", "name: x\ndata: {dataset: sine\ngrid: {}\n"), [],
        "{tmp}/job.yaml: invalid YAML at line 3: expected ',' or '}', but got ':'"),
    "YAML with a Python tag": (
        lambda tmp, mp: write(tmp / "job.yaml", "name: x\ndata: !!python/object/apply:"
                              "pathlib.Path.touch [pwned]\n"), [],
        "{tmp}/job.yaml: invalid YAML at line 2: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:pathlib.Path.touch'"),
    "class not in the data": (
        lambda tmp, mp: job(tmp, data={"dataset": "mnist", "n": 10,
                                       "root": str(tiny_mnist(tmp, mp))},
                            grid={"class": [2, 7]}, model={"kind": "conv"},
                            train={"steps": 10, "batch_size": 8}), [],
        "data.classes: class 7 not in the data (present: [0, 1, 2, 3]) (grid point "
        "{'class': 7})"),
    "classes of data without labels": (
        job, ["grid.class=[3]"],
        "data.classes: the 'sine' data have no class labels, so classes [3] cannot be kept"),
    "survey name with path characters": (
        job, ["name=../elsewhere"], "name: '../elsewhere' must be filename-safe"),
    "hidden survey name": (job, ["name=.hidden"], "name: '.hidden' must be filename-safe"),
    "fewer points than one batch": (
        job, ["train.batch_size=500"],
        "train.batch_size: 500, but the fit has 200 data points (sine); lower the batch size or "
        "use more points (grid point {'seed': 0})"),
    "missing job file": (lambda tmp, mp: tmp / "nope.yaml", [], "{tmp}/nope.yaml: no such file"),
    # Every field's range (issue 28): the schema's messages, through the command.
    "a flow without couplings": (
        job, ["model.couplings=0"],
        "model.couplings: must be >= 1 for model.kind 'mlp' (a flow without couplings is the "
        "identity), got 0 (grid point {'seed': 0})"),
    "zero hidden units": (job, ["model.hidden=0"], "model.hidden: must be >= 1, got 0"),
    "absurd conditioner depth": (
        job, ["model.depth=1000000000000"], "model.depth: must be <= 256, got 1000000000000"),
    "zero conv layers": (job, ["model.conv_depth=0"], "model.conv_depth: must be >= 1, got 0"),
    "infinite clamp": (job, ["model.clamp=.inf"], "model.clamp: must be a finite number, got inf"),
    "zero ambient dimension": (
        job, ["data.ambient_dim=0"], "data.ambient_dim: must be >= 1, got 0"),
    "negative data noise": (job, ["data.noise=-0.1"], "data.noise: must be >= 0, got -0.1"),
    "negative seed": (job, ["train.seed=-1"], "train.seed: must be >= 0, got -1"),
    "negative class": (
        job, ["data.classes=[3, -1]"], "data.classes[1]: must be >= 0, got -1"),
    "absurd number of steps": (
        job, ["train.steps=1000000000000"],
        "train.steps: must be <= 1000000000, got 1000000000000"),
    # Sizes checked before anything is allocated, against this machine's memory (8 GiB here).
    "more points than memory holds": (
        lambda tmp, mp: small_machine(mp, job(tmp)), ["data.n=1000000000"],
        "data.n: 1000000000 is too large: 1000000000 points x 2 dimensions x 16 bytes (float64 "
        "as made, float32 as the dataset, float32 as trained on) need 29.8 GiB, more than this "
        "machine's 8 GiB of memory; lower data.n (grid point {'seed': 0})"),
    "a rotation larger than memory": (
        lambda tmp, mp: small_machine(mp, job(tmp)),
        ["data.dataset=sphere", "data.latent_dim=2", "data.ambient_dim=100000"],
        "data.ambient_dim: 100000 is too large: the random rotation of R^100000 (100000 x 100000 "
        "float64, with its QR) needs 224 GiB, more than this machine's 8 GiB of memory; lower "
        "data.ambient_dim"),
    "a model larger than memory": (
        lambda tmp, mp: small_machine(mp, job(tmp)), ["model.hidden=4096", "model.depth=16"],
        "model: 1879638036 parameters (model.couplings 8, hidden 4096, depth 16) for points of "
        "shape (2,) need 28 GiB with their gradients and Adam's moments, more than this "
        "machine's 8 GiB of memory; make the model smaller"),
    "a data file larger than memory": (
        lambda tmp, mp: small_machine(
            mp, job(tmp, data={"dataset": "array", "n": 20000, "path": str(
                array_file(tmp, np.zeros((20000, 3))))}), memory=2**19),
        [], "data.n: 20000 is too large: 20000 points x 3 dimensions x 16 bytes"),
}


def small_machine(monkeypatch: pytest.MonkeyPatch, path: Path, memory: int = 8 * 2**30) -> Path:
    """Pretend this machine has ``memory`` bytes; ``path`` passed through."""
    monkeypatch.setattr(footprint, "machine_memory", lambda: memory)
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _no_ray(address=None):
    raise AssertionError("Ray was started")


@pytest.fixture(autouse=True)
def _here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("MFLOW_RESULTS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # where ./results and ./mlflow.db would appear
    monkeypatch.setattr(cluster, "init_ray", _no_ray)


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if ".sha256" not in p.name}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_alike_by_validate_and_run(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    make, overrides, expected = CASES[case]
    path = make(tmp_path, monkeypatch)
    sets = [a for item in overrides for a in ("--set", item)]
    before = files(tmp_path)
    errors = []
    for command in ("validate", "run"):
        assert main([command, str(path), *sets]) == 2
        captured = capsys.readouterr()
        assert "Traceback" not in captured.out + captured.err
        errors.append(captured.err)
    assert errors[0] == errors[1]  # validate and run agree
    [line] = errors[0].splitlines()
    assert line.startswith("error: ") and expected.replace("{tmp}", str(tmp_path)) in line
    assert files(tmp_path) == before  # no results, no mlflow.db, no pwned file


@pytest.mark.parametrize("command", ["status", "sync-mlflow"])
@pytest.mark.parametrize("name", ["../elsewhere", "a/b", ".hidden"])
def test_survey_names_with_path_characters_are_refused(name: str, command: str, capsys):
    assert main([command, name]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"error: survey name: {name!r} must be filename-safe (letters, digits, '_', '-', '.'; "
        "starting with a letter or digit)"
    )


def test_the_console_script_refuses_bad_data_in_one_line(tmp_path: Path):
    """The installed ``survey`` entry point, as a user types it, on data with NaN rows."""
    survey = Path(sys.executable).with_name("survey")
    path = arrays(nan_rows)(tmp_path, None)
    env = {k: v for k, v in os.environ.items() if k not in ("MFLOW_RESULTS", "MLFLOW_TRACKING_URI")}
    for command in ("validate", "run"):
        done = subprocess.run([str(survey), command, str(path)], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=300)
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            f"error: {tmp_path}/points.npy: 3 of 200 rows contain NaN or inf (first: row 3, "
            "counting from 0); remove or fill them (grid point {'seed': 0})"
        ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml", "points.npy"]


class _Payload:
    """Unpickling this runs ``Path.touch``: what a hostile checkpoint would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_a_checkpoint_is_loaded_with_weights_only(tmp_path: Path):
    """A checkpoint that carries code is refused, and its code never runs."""
    marker = tmp_path / "pwned"
    path = tmp_path / "state.pt"
    torch.save({"payload": _Payload(marker)}, path)
    spec = FitSpec(data=DataSpec("sine", n=64)).replace(train={"batch_size": 32})
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        Trainer(spec).restore(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ("foo://bucket/x",
         "error: results folder 'foo://bucket/x' (--out): unknown scheme 'foo'; use a local path "
         "or a URI of file://, local://, s3://, gs://, gcs://, hdfs://, viewfs://, abfs://, "
         "abfss://"),
        ("s3:///x", "error: results folder 's3:///x' (--out): Missing bucket name in S3 URI"),
    ],
)
def test_a_results_uri_of_an_unknown_scheme_is_refused_before_ray_starts(
    out: str, expected: str, tmp_path: Path, capsys
):
    before = files(tmp_path)
    assert main(["run", str(job(tmp_path)), "--out", out]) == 2  # init_ray would raise
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [expected]
    assert "Traceback" not in captured.out + captured.err
    assert files(tmp_path) == before | {"job.yaml"}
