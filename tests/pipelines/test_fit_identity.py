"""A fit's id (issue 28): a field set to the value its ``None`` stands for gives the fit id of
the same field left out, and the ids of fits stored before stay what they were."""

from __future__ import annotations

import pytest

from mflow.config import DataSpec, FitSpec, TrainSpec
from mflow.settle import settle_settings
from mflow.training import prior_update, prior_update_settings
from pipelines.job import fit_id, parse_job, plan
from pipelines.job.identity import IMPLIED_DEFAULTS

EXPLICIT = [
    {"train": {"prior_update": "adam"}},
    {"train": {"prior_every": 5}},
    {"train": {"prior_ema": 0.98}},
    {"train": {"lr_prior_dim": 3}},  # a non-None default: always the same id
    {"readout": {"settle_window": 5}},
    {"readout": {"settle_drift": 1.25}},
    {"readout": {"settle_margin": 1.5}},
    {"train": {"prior_update": "adam", "prior_every": 5, "prior_ema": 0.98},
     "readout": {"settle_window": 5, "settle_drift": 1.25, "settle_margin": 1.5}},
]


@pytest.mark.parametrize("sections", EXPLICIT, ids=[str(e) for e in EXPLICIT])
def test_an_explicit_default_gives_the_id_of_the_field_left_out(sections):
    assert fit_id(FitSpec().replace(**sections)) == fit_id(FitSpec())
    scurve = FitSpec(data=DataSpec("scurve", n=500))
    assert fit_id(scurve.replace(**sections)) == fit_id(scurve)


@pytest.mark.parametrize(
    "sections",
    [{"train": {"prior_update": "moment"}}, {"train": {"prior_every": 6}},
     {"train": {"prior_ema": 0.9}}, {"readout": {"settle_window": 4}},
     {"train": {"lr_prior_dim": None}}],
)
def test_another_value_is_another_fit(sections):
    assert fit_id(FitSpec().replace(**sections)) != fit_id(FitSpec())


def test_the_implied_defaults_are_what_the_library_reads_for_none():
    train = TrainSpec()
    assert prior_update(train) == IMPLIED_DEFAULTS["train.prior_update"]
    assert prior_update_settings(train) == (IMPLIED_DEFAULTS["train.prior_every"],
                                            IMPLIED_DEFAULTS["train.prior_ema"])
    assert settle_settings(FitSpec()) == (IMPLIED_DEFAULTS["readout.settle_window"],
                                          IMPLIED_DEFAULTS["readout.settle_drift"],
                                          IMPLIED_DEFAULTS["readout.settle_margin"])


def test_the_ids_of_stored_fits_do_not_change():
    """Ids as computed on main before this change (fields left out): a regression guard."""
    assert fit_id(FitSpec()) == "sine-4086781b59"
    early = FitSpec(data=DataSpec("scurve", n=500)).replace(
        train={"steps": 100, "early_stop_window": 5})
    assert fit_id(early) == "scurve-390b98ea90"


def test_a_job_that_spells_out_the_defaults_plans_the_same_fits():
    raw = {"name": "ids", "data": {"dataset": "sine", "n": 200}, "grid": {"seed": [0, 1]}}
    spelled = ["train.prior_update=adam", "train.prior_every=5", "train.prior_ema=0.98",
               "readout.settle_window=5", "readout.settle_drift=1.25",
               "readout.settle_margin=1.5"]
    left_out = [fit.fit_id for fit in plan(parse_job(raw))]
    assert [fit.fit_id for fit in plan(parse_job(raw, spelled))] == left_out


def test_data_n_left_out_keeps_the_ids_of_the_default_it_stands_for(tmp_path):
    import numpy as np

    for name in ("sine", "mnist", "sphere"):
        assert fit_id(FitSpec(data=DataSpec(name))) == fit_id(FitSpec(data=DataSpec(name, n=2000)))
    small, large = tmp_path / "small.npy", tmp_path / "large.npy"
    np.save(small, np.zeros((1500, 2)))
    np.save(large, np.zeros((2500, 2)))

    def ids(path, n=None):
        return fit_id(FitSpec(data=DataSpec("array", path=str(path), n=n)))

    assert ids(small) != ids(small, 2000)  # all but a held-out slice against every row
    assert ids(large) != ids(large, 2000)  # 2,300 rows against 2,000


def test_an_image_folder_enters_the_fit_id_by_its_images(tmp_path):
    from PIL import Image

    def folder(name, value):
        for i in range(2):
            (tmp_path / name / "a").mkdir(parents=True, exist_ok=True)
            Image.new("L", (4, 4), value + i).save(tmp_path / name / "a" / f"{i}.png")
        return fit_id(FitSpec(data=DataSpec("images", path=str(tmp_path / name))))

    assert folder("one", 10) == folder("two", 10)  # moved: the same fit
    assert folder("one", 10) != folder("three", 20)
