"""Job files: strict validation with dotted-path errors, overrides, grid expansion, fit ids."""

from __future__ import annotations

import doctest
import hashlib
import json
import types
from pathlib import Path

import numpy as np
import pytest

import pipelines.job.identity
import pipelines.job.jobfile
import pipelines.job.schema
import pipelines.results.fit_run
import pipelines.results.store
from mflow.config import DataSpec, FitSpec
from mflow.datasets import DATA_VERSIONS
from pipelines.job import (
    JobError,
    count,
    expand,
    fit_id,
    legacy_fit_id,
    load_job,
    parse_job,
    plan,
)


def raw(**blocks):
    job = {"name": "t", "data": {"dataset": "sine", "n": 100}}
    job.update(blocks)
    return job


def error_of(job, overrides=()) -> str:
    with pytest.raises(JobError) as info:
        plan(parse_job(job, overrides))
    return str(info.value)


# -- counts and expansion --------------------------------------------------------------------


def test_grid_product_is_the_set_of_fits():
    job = parse_job(raw(grid={"dataset": ["sine", "line", "scurve"], "seed": [0, 1, 2],
                              "train.lr": [1e-3, 3e-3]}))
    fits = plan(job)
    assert count(job) == len(fits) == 18
    assert len({f.fit_id for f in fits}) == 18
    assert {f.spec.data.dataset for f in fits} == {"sine", "line", "scurve"}


def test_no_grid_is_one_fit():
    fits = plan(parse_job(raw()))
    assert len(fits) == 1 and fits[0].axes == {}
    assert fits[0].spec.data.n == 100


def test_expand_is_a_pure_generator():
    job = parse_job(raw(grid={"seed": [0, 1]}))
    gen = expand(job)
    assert isinstance(gen, types.GeneratorType)
    assert [f.fit_id for f in gen] == [f.fit_id for f in expand(job)]


def test_short_axes_set_their_fields():
    job = parse_job(raw(data={"dataset": "mnist", "n": 10}, model={"kind": "conv"},
                        grid={"class": [3, [4, 5]], "seed": [7], "noise_floor": [0.02],
                              "n": [50]}))
    a, b = plan(job)
    assert a.spec.data.classes == (3,) and b.spec.data.classes == (4, 5)
    assert a.spec.train.seed == a.spec.data.seed == 7
    assert a.spec.train.noise_floor == 0.02 and a.spec.data.n == 50
    assert a.axes == {"class": 3, "seed": 7, "noise_floor": 0.02, "n": 50}


def test_zipped_axis_sets_several_fields_together():
    variant = [
        {"label": "manifold", "prior.kind": "manifold", "model.volume_preserving": True},
        {"label": "baseline", "prior.kind": "standard", "model.volume_preserving": False},
    ]
    fits = plan(parse_job(raw(grid={"variant": variant, "seed": [0, 1]})))
    assert len(fits) == 4
    pairs = {(f.axes["variant"], f.spec.prior.kind, f.spec.model.volume_preserving) for f in fits}
    assert pairs == {("manifold", "manifold", True), ("baseline", "standard", False)}


def test_fit_ids_do_not_depend_on_grid_order():
    a = parse_job(raw(grid={"seed": [0, 1, 2], "dataset": ["sine", "line"]}))
    b = parse_job(raw(grid={"dataset": ["line", "sine"], "seed": [2, 0, 1]}))
    ids_a = {f.fit_id: f.spec for f in plan(a)}
    ids_b = {f.fit_id: f.spec for f in plan(b)}
    assert ids_a == ids_b


def test_fit_id_is_stable_filename_safe_and_follows_the_config():
    spec = FitSpec.from_dict({"data": {"dataset": "scurve", "n": 10}})
    same = FitSpec.from_dict(json.loads(spec.to_json()))
    assert fit_id(spec) == fit_id(same)
    assert fit_id(spec) != fit_id(spec.replace(train={"seed": 1}))
    ident = fit_id(spec)
    assert ident.startswith("scurve-") and ident.replace("-", "").isalnum()


def test_base_block_values_reach_the_spec_and_defaults_fill_the_rest():
    fits = plan(parse_job(raw(train={"steps": 7, "lr": "1e-3"}, model={"hidden": 8})))
    spec = fits[0].spec
    assert spec.train.steps == 7 and spec.train.lr == pytest.approx(1e-3)
    assert spec.model.hidden == 8
    assert spec.train.batch_size == FitSpec().train.batch_size


def test_duplicate_configs_are_refused():
    assert "same config" in error_of(raw(grid={"n": [10, 10]}))


# -- overrides -------------------------------------------------------------------------------


def test_set_overrides_any_field_with_yaml_scalars():
    job = parse_job(raw(grid={"seed": [0]}), ["train.steps=500", "train.lr=1e-3",
                                              "train.grad_clip=null", "grid.seed=[0, 1, 2]",
                                              "resources.cpu=0.5", "description=hi there"])
    fits = plan(job)
    assert len(fits) == 3
    assert fits[0].spec.train.steps == 500 and fits[0].spec.train.lr == pytest.approx(1e-3)
    assert fits[0].spec.train.grad_clip is None
    assert job.resources.cpu == 0.5 and job.description == "hi there"


def test_set_can_name_a_dotted_grid_axis():
    fits = plan(parse_job(raw(), ["grid.train.lr=[0.1, 0.2]"]))
    assert [f.spec.train.lr for f in fits] == [0.1, 0.2]


def test_set_on_a_gridded_field_is_refused():
    message = error_of(raw(grid={"seed": [0, 1]}), ["train.seed=3"])
    assert "train.seed" in message and "grid.seed" in message


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.steps", "--set: expected key.path=value, got 'train.steps'"),
        ("train.stepz=3", "train.stepz: unknown key"),
        ("train.lr=abc", "train.lr: expected a number, got 'abc'"),
        ("train.steps.x=3", "--set train.steps.x: train.steps is not a mapping"),
    ],
)
def test_bad_overrides_name_the_path(override, expected):
    assert error_of(raw(train={"steps": 5}), [override]) == expected


# -- error messages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "job, expected",
    [
        (raw(train={"stepz": 3}), "train.stepz: unknown key"),
        (raw(train={"lr": "abc"}), "train.lr: expected a number, got 'abc'"),
        (raw(train={"steps": 1.5}), "train.steps: expected an integer, got 1.5"),
        (raw(train={"steps": True}), "train.steps: expected an integer, got True"),
        (raw(model={"volume_preserving": "yes"}),
         "model.volume_preserving: expected true or false, got 'yes'"),
        (raw(data={"dataset": "sine", "classes": [1, "a"]}),
         "data.classes[1]: expected an integer, got 'a'"),
        (raw(extra=1), "extra: unknown key"),
        (raw(train=3), "train: expected a mapping, got 3"),
        (raw(resources={"cpux": 1}), "resources.cpux: unknown key"),
        (raw(resources={"cpu": 0}), "resources.cpu: must be > 0, got 0"),
        (raw(grid={"train.lr": [0.1, "abc"]}), "grid.train.lr[1]: expected a number, got 'abc'"),
        (raw(grid={"seed": []}), "grid.seed: empty axis (no value, so no fit)"),
        (raw(grid={"seed": 3}), "grid.seed: expected a list of values, got 3"),
        (raw(grid={"train.nope": [1]}), "grid.train.nope: unknown field 'train.nope'"),
        (raw(grid={"variant": [{"prior.kindd": "manifold"}]}),
         "grid.variant[0].prior.kindd: unknown field 'prior.kindd'"),
        (raw(grid={"seed": [0], "train.seed": [1]}),
         "grid.train.seed: train.seed is already set by grid axis 'seed'"),
        (raw(model={"kind": "cnv"}), "model.kind: expected one of conv, mlp, got 'cnv'"),
        (raw(data={"dataset": "sinee"}), "data.dataset: unknown dataset 'sinee'"),
        (raw(data={"n": 5}), "data.dataset: required (or a grid axis 'dataset')"),
        (raw(name="a b"), "name: 'a b' must be filename-safe"),
        (raw(resources={"gpu": 2}), "resources.gpu: 2 asked for"),
        (raw(resources={"pack": 0}), "resources.pack: expected an integer >= 1 or 'auto', got 0"),
        (raw(resources={"pack": "big"}), "resources.pack: expected an integer >= 1 or 'auto'"),
        # The choices and bounds declared on mflow.config's fields, read by the schema.
        (raw(train={"dtype": "float16"}),
         "train.dtype: expected one of float32, float64, got 'float16'"),
        (raw(train={"prior_ema": 1}), "train.prior_ema: must be < 1, got 1.0"),
        (raw(grid={"train.prior_update": ["adam", "newton"]}),
         "grid.train.prior_update[1]: expected one of adam, moment, got 'newton'"),
        # No initial data noise: the prior starts at cov(g(x)), singular on a manifold.
        (raw(train={"noise_start": 0}), "train.noise_start: must be > 0, got 0"),
        (raw(grid={"train.noise_start": [0.5, 0]}), "grid.train.noise_start[1]: must be > 0"),
    ],
)
def test_errors_name_the_dotted_path(job, expected):
    assert error_of(job).startswith(expected)


def test_zipped_axis_values_must_be_mappings():
    message = error_of(raw(grid={"variant": [1]}))
    assert message.startswith("grid.variant[0]: 'variant' is not a field")


def test_a_missing_name_is_an_error():
    job = raw()
    del job["name"]
    assert error_of(job) == "name: required"


# -- files -----------------------------------------------------------------------------------


def test_yaml_file_reads_1e_minus_3_as_a_float(tmp_path: Path):
    path = tmp_path / "job.yaml"
    path.write_text("name: f\ndata: {dataset: sine}\ntrain: {lr: 1e-3}\ngrid: {seed: [0, 1]}\n")
    job = load_job(path)
    assert [f.spec.train.lr for f in plan(job)] == [pytest.approx(1e-3)] * 2
    assert job.source == str(path)


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, "no such file"),
        ("name: [unclosed\n", "invalid YAML at line"),
        ("- 1\n- 2\n", "expected a mapping at the top"),
        ("name: x\ndata: !!python/object:os.system {}\n", "invalid YAML"),
    ],
)
def test_file_errors_name_the_file(tmp_path: Path, text, expected):
    path = tmp_path / "job.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(JobError) as info:
        load_job(path)
    assert str(path) in str(info.value) and expected in str(info.value)


# -- the modules' examples -------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    [pipelines.job.identity, pipelines.job.jobfile, pipelines.job.schema, pipelines.results.store,
     pipelines.results.fit_run],
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_unset_optional_fields_do_not_enter_the_fit_id():
    """A new optional config field (default None) keeps the ids of stored fits; setting it,
    or changing any other value, gives another id. (``data.n`` left out hashes as the 2000
    it stands for: test_fit_identity.)"""
    spec = FitSpec(data=DataSpec(n=2000))
    assert spec.data.ambient_dim is None and spec.data.classes is None
    config = {s: {k: v for k, v in fields.items() if v is not None}
              for s, fields in spec.to_dict().items()}
    legacy = json.dumps(config, sort_keys=True)
    assert legacy_fit_id(spec) == f"sine-{hashlib.sha256(legacy.encode()).hexdigest()[:10]}"
    del config["train"]["device"], config["train"]["log_every"]
    canonical = json.dumps(config, sort_keys=True)
    assert fit_id(spec) == f"sine-{hashlib.sha256(canonical.encode()).hexdigest()[:10]}"
    assert fit_id(spec.replace(data={"ambient_dim": 5})) != fit_id(spec)
    assert fit_id(spec.replace(train={"steps": 4001})) != fit_id(spec)


def test_where_the_data_lie_where_a_fit_runs_and_its_logging_keep_the_fit_id():
    spec = FitSpec(data=DataSpec("mnist", classes=(3,), root="/data/mnist"))
    same = [spec.replace(data={"root": "/moved/mnist"}), spec.replace(data={"root": None}),
            spec.replace(train={"device": "cpu"}), spec.replace(train={"log_every": 7})]
    assert {fit_id(s) for s in same} == {fit_id(spec)}
    assert fit_id(spec.replace(data={"classes": (4,)})) != fit_id(spec)
    # With early stopping on, a fit stops at a logged step: the interval changes the result.
    stopping = spec.replace(train={"early_stop_window": 3})
    assert fit_id(stopping.replace(train={"log_every": 7})) != fit_id(stopping)
    assert fit_id(stopping.replace(data={"root": "/moved/mnist"})) == fit_id(stopping)


def test_moving_the_data_folder_or_logging_more_often_keeps_the_planned_ids():
    job = raw(data={"dataset": "mnist", "root": "/data/mnist", "n": 10},
              model={"kind": "conv"}, grid={"class": [1, 2], "seed": [0, 1]})
    ids = [f.fit_id for f in plan(parse_job(job))]
    for overrides in (["data.root=/moved/mnist"], ["train.log_every=50"],
                      ["train.device=cpu"]):
        assert [f.fit_id for f in plan(parse_job(job, overrides))] == ids


def test_a_data_file_enters_the_fit_id_by_its_content(tmp_path: Path):
    def spec(path: Path) -> FitSpec:
        return FitSpec(data=DataSpec("array", path=str(path)))

    first, moved = tmp_path / "a" / "points.npy", tmp_path / "b" / "renamed.npy"
    for path in (first, moved):
        path.parent.mkdir()
        np.save(path, np.arange(20.0).reshape(10, 2))
    assert fit_id(spec(first)) == fit_id(spec(moved))
    assert legacy_fit_id(spec(first)) != legacy_fit_id(spec(moved))  # the path was hashed
    np.save(moved, np.arange(20.0).reshape(10, 2) + 1)
    assert fit_id(spec(first)) != fit_id(spec(moved))
    with pytest.raises(JobError, match="gone.npy: no such file"):
        fit_id(spec(tmp_path / "gone.npy"))


def test_a_loader_version_above_one_enters_the_fit_id(monkeypatch):
    """Fits of points that a changed loader no longer gives are not taken for the new ones."""
    spec = FitSpec(data=DataSpec("sphere", n=2000, latent_dim=2))
    assert DATA_VERSIONS["sphere"] == 2 and DATA_VERSIONS["sine"] == 1
    config = {s: {k: v for k, v in f.items() if v is not None} for s, f in spec.to_dict().items()}
    text = json.dumps({**config, "data_version": 2}, sort_keys=True)
    assert legacy_fit_id(spec) == f"sphere-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    del config["train"]["device"], config["train"]["log_every"]
    text = json.dumps({**config, "data_version": 2}, sort_keys=True)
    assert fit_id(spec) == f"sphere-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    before = fit_id(spec)
    monkeypatch.setitem(DATA_VERSIONS, "sphere", 1)  # as before the change: no version in it
    assert fit_id(spec) != before


def test_the_job_may_name_the_grouping():
    job = parse_job(raw(grid={"dataset": ["sine", "line"], "seed": [0, 1]},
                        analysis={"group_by": ["seed"]}))
    assert job.analysis.options() == {"group_by": ["seed"]}
    assert parse_job(raw()).analysis.options() == {"group_by": None}
    assert "analysis.group_by: 'class' is not a grid axis; axes: seed" in error_of(
        raw(grid={"seed": [0]}, analysis={"group_by": ["class"]}))
    assert "analysis.rule" in error_of(raw(analysis={"rule": "gap"}))
