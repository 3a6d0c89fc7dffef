"""mflow.batch: a plan of fits trained in one process, results appended pack by pack."""

from __future__ import annotations

import gzip
import json

import numpy as np

from mflow.batch import chunks, main, merge_plans, read_results
from mflow.config import DataSpec, FitSpec

BASE = FitSpec(data=DataSpec("sine", n=300)).replace(train={"steps": 30, "log_every": 10})


def _plan(survey: str, specs: list[FitSpec]) -> dict:
    return {"survey": survey,
            "fits": [{"fit_id": f"{survey}-{i}", "spec": s.to_dict()} for i, s in enumerate(specs)]}


def test_chunks_group_equal_pack_keys_in_plan_order():
    specs = [BASE.replace(data={"dataset": d, "seed": s})
             for d in ("sine", "line") for s in range(3)]
    assert chunks(specs, 2) == [[0, 1], [2], [3, 4], [5]]


def test_batch_writes_every_fit_with_its_artifacts(tmp_path):
    plans = [_plan("a", [BASE.replace(train={"seed": s}, data={"seed": s}) for s in range(2)]),
             _plan("b", [BASE.replace(data={"dataset": "line"})])]
    paths = []
    for p in plans:
        paths.append(tmp_path / f"{p['survey']}.json")
        paths[-1].write_text(json.dumps(p))
    assert main([*map(str, paths), "-o", str(tmp_path / "out"), "--pack", "8"]) == 0
    lines = list(read_results(tmp_path / "out" / "results.jsonl.gz"))
    assert [(line["survey"], line["fit_id"]) for line in lines] == [("a", "a-0"), ("a", "a-1"),
                                                                     ("b", "b-0")]
    assert all(line["result"]["status"] == "ok" and line["result"]["steps"] == 30
               for line in lines)
    with np.load(tmp_path / "out" / "artifacts.npz") as kept:
        assert {"a-0/samples", "a-1/projection", "b-0/index"} <= set(kept.files)
    assert merge_plans(plans)["fits"][2]["survey"] == "b"


def test_a_pack_cut_off_mid_write_is_dropped_not_half_read(tmp_path):
    path = tmp_path / "results.jsonl.gz"
    with gzip.open(path, "at") as f:
        f.write('{"fit_id": "x"}\n')
    whole = path.read_bytes()
    with gzip.open(path, "at") as f:
        f.write('{"fit_id": "y"}\n{"fit_id": "z"}\n')
    path.write_bytes(path.read_bytes()[: len(whole) + 12])  # the second member, truncated
    assert [line["fit_id"] for line in read_results(path)] == ["x"]


def test_the_deadline_skips_whole_packs(tmp_path):
    plan = tmp_path / "p.json"
    # the first pack starts at once, before the deadline; its 600 steps take far longer than
    # 0.2 s (about 3 s here), so the second pack would start after it
    first = BASE.replace(train={"steps": 600})
    plan.write_text(json.dumps(_plan("a", [first, BASE.replace(data={"dataset": "line"})])))
    assert main([str(plan), "-o", str(tmp_path / "out"), "--deadline-s", "0.2"]) == 1
    assert [line["fit_id"] for line in read_results(tmp_path / "out" / "results.jsonl.gz")] == [
        "a-0"]


def test_checkpoints_let_a_finished_pack_be_read_again_without_training(tmp_path):
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(_plan("a", [BASE])))
    ck = tmp_path / "ck"
    assert main([str(plan), "-o", str(tmp_path / "one"), "--checkpoints", str(ck)]) == 0
    assert len(list(ck.glob("*.pt"))) == 1
    assert main([str(plan), "-o", str(tmp_path / "two"), "--checkpoints", str(ck)]) == 0
    first, again = (next(read_results(tmp_path / d / "results.jsonl.gz"))["result"]
                    for d in ("one", "two"))
    assert again["eigenvalues"] == first["eigenvalues"] and again["steps"] == first["steps"]
    assert again["wall_s"] == first["wall_s"]  # not trained again: no time added
    assert "continues from" in (tmp_path / "two" / "log.txt").read_text()
