"""mflow.batch: a plan of fits trained in one process, results appended pack by pack."""

from __future__ import annotations

import gzip
import json
import math
import time

import numpy as np
import pytest

from mflow.batch import chunks, main, merge_plans, read_results
from mflow.config import DataSpec, FitSpec
from mflow.fit import FitResult
from mflow.pack import PackTrainer

BASE = FitSpec(data=DataSpec("sine", n=300)).replace(train={"steps": 30, "log_every": 10})


def _plan(survey: str, specs: list[FitSpec]) -> dict:
    return {"survey": survey,
            "fits": [{"fit_id": f"{survey}-{i}", "spec": s.to_dict()} for i, s in enumerate(specs)]}


def test_chunks_group_equal_pack_keys_in_plan_order():
    specs = [BASE.replace(data={"dataset": d, "seed": s})
             for d in ("sine", "scurve") for s in range(3)]  # 2-D and 3-D points
    assert chunks(specs, 2) == [[0, 1], [2], [3, 4], [5]]


def test_data_of_equal_shape_share_a_pack_key():
    sine, line = (BASE.replace(data={"dataset": d}) for d in ("sine", "line"))
    assert chunks([sine, line, sine], 8) == [[0, 1, 2]]


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


def test_the_deadline_skips_whole_packs(tmp_path, monkeypatch):
    import types

    import mflow.batch as batch

    # The batch's clock moves only when a pack trains (10 s a pack), so which pack starts
    # before the deadline does not depend on how fast this machine trains.
    now = [0.0]
    run = batch.PackTrainer.run

    def run_for_10_s(self, *args, **kwargs):
        now[0] += 10.0
        return run(self, *args, **kwargs)

    monkeypatch.setattr(batch, "time", types.SimpleNamespace(
        perf_counter=lambda: now[0], monotonic=time.monotonic))
    monkeypatch.setattr(batch.PackTrainer, "run", run_for_10_s)
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(_plan("a", [BASE, BASE.replace(data={"dataset": "scurve"})])))
    assert main([str(plan), "-o", str(tmp_path / "out"), "--deadline-s", "5"]) == 1
    assert [line["fit_id"] for line in read_results(tmp_path / "out" / "results.jsonl.gz")] == [
        "a-0"]
    assert "deadline passed: skipped pack 1 (1 fits)" in (tmp_path / "out" / "log.txt").read_text()


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


def _results(out) -> list[dict]:
    return list(read_results(out / "results.jsonl.gz"))


def test_a_rerun_skips_the_fits_that_have_results(tmp_path):
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(_plan("a", [BASE, BASE.replace(data={"dataset": "line"})])))
    out = tmp_path / "out"
    assert main([str(plan), "-o", str(out)]) == 0
    first = _results(out)
    assert not list((out / "checkpoints").glob("*"))  # results in: the states are deleted
    log_before = (out / "log.txt").read_text()
    assert main([str(plan), "-o", str(out)]) == 0
    rerun = (out / "log.txt").read_text()[len(log_before):]
    assert "2 of 2 fits already have results" in rerun and "pack 0:" not in rerun
    assert _results(out) == first  # nothing trained or appended again
    with np.load(out / "artifacts.npz") as kept:  # the earlier packs' arrays are kept
        assert {"a-0/samples", "a-1/samples"} <= set(kept.files)


def test_a_pack_cut_off_mid_write_is_trained_again_and_read_after_it(tmp_path):
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(_plan("a", [BASE, BASE.replace(data={"dataset": "line"})])))
    out = tmp_path / "out"
    assert main([str(plan), "-o", str(out), "--pack", "1"]) == 0
    path = out / "results.jsonl.gz"
    # the second pack's gzip member loses its end: as a run killed while appending leaves it
    path.write_bytes(path.read_bytes()[:-10])
    assert [line["fit_id"] for line in read_results(path)] == ["a-0"]
    assert main([str(plan), "-o", str(out), "--pack", "1"]) == 0
    assert [line["fit_id"] for line in read_results(path)] == ["a-0", "a-1"]


def test_results_hold_the_numbers_the_fits_ended_with_exactly(tmp_path):
    specs = [BASE.replace(train={"seed": s}, data={"seed": s}) for s in range(2)]
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(_plan("a", specs)))
    assert main([str(plan), "-o", str(tmp_path / "out")]) == 0
    expected = PackTrainer(specs).run()  # the same pack, trained here: the same numbers
    for line, want in zip(_results(tmp_path / "out"), expected, strict=True):
        got = FitResult.from_dict(line["result"])
        assert got.eigenvalues == want.eigenvalues
        assert any(float(f"{v:.7g}") != v for v in want.eigenvalues)  # 7 digits would differ
        assert got.curve == want.curve and got.local_dim == want.local_dim
        assert got.settle_margin == want.settle_margin
        assert got.settle_drift == want.settle_drift or (
            math.isinf(want.settle_drift) and math.isinf(got.settle_drift))


def test_an_interrupted_pack_continues_from_its_checkpoint(tmp_path, monkeypatch):
    import mflow.batch as batch

    spec = BASE.replace(train={"steps": 300, "log_every": 10})
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(_plan("a", [spec])))
    out = tmp_path / "out"
    args = [str(plan), "-o", str(out), "--checkpoint-every-s", "0"]
    saves = []

    def save_then_interrupt(trainer, path):  # as Ctrl-C would, just after the third save
        batch_save(trainer, path)
        saves.append(trainer.step)
        if len(saves) == 3:
            raise KeyboardInterrupt

    batch_save = batch.save_checkpoint
    monkeypatch.setattr(batch, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    monkeypatch.setattr(batch, "save_checkpoint", batch_save)
    assert saves == [10, 20, 30]
    assert not (out / "results.jsonl.gz").exists()
    assert [p.name for p in (out / "checkpoints").iterdir() if p.suffix != ".pt"] == []
    assert main(args) == 0
    log = (out / "log.txt").read_text()
    step = int(log.split("continues from ")[1].split("(step ")[1].split(")")[0])
    assert 0 < step < 300
    (line,) = _results(out)
    got, want = FitResult.from_dict(line["result"]), PackTrainer([spec]).run()[0]
    assert got.steps == 300 and got.eigenvalues == want.eigenvalues
    assert got.curve == want.curve  # as if it had never stopped


def test_bad_arguments_are_named_without_a_traceback(tmp_path, capsys):
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"survey": "a"}))
    with pytest.raises(SystemExit) as exit_:
        main([str(plan), "-o", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "not a plan" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(plan), "-o", str(tmp_path / "out"), "--pack", "0"])
    assert "--pack: must be >= 1" in capsys.readouterr().err


def _left_state(out, ids, trainer=None):
    """Where ``mflow.batch`` keeps the state of the pack of ``ids`` in ``out``, with
    ``trainer``'s state written there (as a killed run leaves it)."""
    import mflow.batch as batch

    path = batch._checkpoint(out / "checkpoints", ids)
    path.parent.mkdir(parents=True, exist_ok=True)
    if trainer is not None:
        batch.save_checkpoint(trainer, path)
    return path


def _refused(out, args, reason: str) -> str:
    """Without the flag the pack is not trained, and the log says why and names the flag."""
    assert main(args) == 1
    assert not (out / "results.jsonl.gz").exists() or not _results(out)
    log = (out / "log.txt").read_text()
    assert reason in log and "not trained: run again with --restart-unresumable" in log, log
    return log


def test_a_state_that_does_not_load_trains_only_with_the_flag(tmp_path):
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(_plan("a", [BASE])))
    out = tmp_path / "out"
    _left_state(out, ["a-0"]).write_bytes(b"not a torch file")
    args = [str(plan), "-o", str(out)]
    _refused(out, args, "could not continue from")
    assert main([*args, "--restart-unresumable"]) == 0
    (line,) = _results(out)
    assert line["result"]["status"] == "ok" and line["result"]["steps"] == 30
    assert line["note"].startswith("could not continue from")
    assert line["note"].endswith("trained from step 0")


def test_a_pack_state_missing_a_member_is_not_continued(tmp_path):
    specs = [BASE.replace(train={"seed": s}, data={"seed": s}) for s in range(2)]
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(_plan("a", specs)))
    out = tmp_path / "out"
    _left_state(out, ["a-0", "a-1"], PackTrainer(specs[:1]))  # the second fit's state lacks
    _refused(out, [str(plan), "-o", str(out)], "different fit spec or pack of fits")


def test_fits_packed_otherwise_before_are_not_continued(tmp_path):
    specs = [BASE.replace(train={"seed": s}, data={"seed": s}) for s in range(2)]
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(_plan("a", specs)))
    out = tmp_path / "out"
    _left_state(out, ["a-0", "a-1"], PackTrainer(specs))  # a run with --pack 2 left it
    log = _refused(out, [str(plan), "-o", str(out), "--pack", "1"], "packed otherwise")
    assert log.count("not trained") == 2  # each pack of one
