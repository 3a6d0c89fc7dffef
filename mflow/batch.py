"""Plans of fits trained in one process, without Ray: ``python -m mflow.batch PLAN -o OUT``.

Each pack's results are appended to ``OUT/results.jsonl.gz`` as it ends (one gzip member per
pack); a rerun skips the fits with results there. A pack keeps its state in a checkpoint
(``mflow.checkpoint``) named by its fits, and a rerun continues from it. A pack never changes
silently: where the state an earlier run left cannot be restored as it was taken (its file does
not load, or the fits were packed otherwise then, by another ``--pack``), the log says why and
the pack is not trained, unless ``--restart-unresumable`` is given; then it trains from step 0
and each of its results lines carries the reason as ``note`` (``survey import`` records it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mflow.checkpoint import RESTART_FLAG, error_line, load_checkpoint, save_checkpoint
from mflow.config import FitSpec, canonical_json
from mflow.files import atomic_write
from mflow.fit import FitResult
from mflow.pack import PackTrainer, pack_key

__all__ = ["CHECKPOINT_EVERY_S", "chunks", "main", "merge_plans", "read_results", "run_plan"]

RESULTS_FILE = "results.jsonl.gz"
ARTIFACTS_FILE = "artifacts.npz"
CHECKPOINTS_DIR = "checkpoints"  # under OUT, unless --checkpoints names a folder
CHECKPOINT_EVERY_S = 30.0  # as resources.checkpoint_every_s of a survey run


def chunks(specs: Sequence[FitSpec], size: int) -> list[list[int]]:
    """Indices of ``specs`` in packs of at most ``size`` equal ``pack_key``s, in plan order.

    Example:
        >>> from mflow.config import DataSpec
        >>> specs = [FitSpec(data=DataSpec(d, seed=s)) for d in ("sine", "scurve") for s in (0, 1)]
        >>> chunks(specs, 8), chunks(specs, 1)
        ([[0, 1], [2, 3]], [[0], [1], [2], [3]])
    """
    if size < 1:
        raise ValueError(f"pack size must be >= 1, got {size}")
    groups: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(pack_key(spec), []).append(i)
    return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]


def _append(path: Path, lines: Sequence[str]) -> None:
    with gzip.open(path, "at", encoding="utf-8") as f:  # one gzip member per pack
        f.write("".join(line + "\n" for line in lines))


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays an earlier run kept (so rewriting the file keeps its packs' arrays)."""
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _members(raw: bytes) -> tuple[bytes, int]:
    """The text of the whole gzip members at the start of ``raw``, and their length in bytes:
    a member cut off mid-write (or corrupt) ends the readable part."""
    text, used = b"", 0
    while used < len(raw):
        decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)  # one gzip member
        try:
            member = decomp.decompress(raw[used:])
        except zlib.error:
            break
        if not decomp.eof:
            break
        text += member
        used = len(raw) - len(decomp.unused_data)
    return text, used


def read_results(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The lines of a ``results.jsonl.gz``; a pack cut off mid-write is dropped, not half read."""
    with open(path, "rb") as f:
        text, _ = _members(f.read())
    for line in text.decode("utf-8").splitlines():
        if line.strip():
            yield json.loads(line)


def _drop_cut_off(path: Path) -> int:
    """Cut a pack that a killed run left half-appended off the end of ``path``, so packs
    appended after it are read; returns the bytes dropped."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        raw = f.read()
        _, used = _members(raw)
        f.truncate(used)
    return len(raw) - used


def _ended(path: Path) -> set[tuple[str | None, str]]:
    """``(survey, fit_id)`` of every fit whose result an earlier run appended to ``path``."""
    if not path.exists():
        return set()
    return {(line.get("survey"), line["fit_id"]) for line in read_results(path)}


def _line(survey: str | None, fit_id: str, spec: FitSpec, result: FitResult,
          note: str | None = None) -> str:
    """One results line; ``json`` writes each float by its shortest repr, which reads back
    as the same float, and non-finite ones as ``NaN``/``Infinity``, which ``json`` reads."""
    line = {"survey": survey, "fit_id": fit_id, "spec": spec.to_dict(),
            "result": result.to_dict()}
    return json.dumps({**line, "note": note} if note else line)


def _saver(path: Path, every_s: float) -> Callable[[PackTrainer], None]:
    """``after_log`` for ``PackTrainer.run``: save the pack's state to ``path`` at a logged
    step once ``every_s`` seconds have passed since the last save (0: at every logged step)."""
    last = time.monotonic()

    def save(trainer: PackTrainer) -> None:
        nonlocal last
        if time.monotonic() - last >= every_s:
            save_checkpoint(trainer, path)
            last = time.monotonic()

    return save


def _held_states(folder: Path, log: Callable[[str], Any]) -> dict[str, Path]:
    """``{canonical spec JSON: checkpoint}`` of the pack states kept in ``folder`` (a file
    that does not load is logged and left out)."""
    import torch

    held = {}
    for path in sorted(folder.glob("*.pt")):
        try:
            specs = torch.load(path, map_location="cpu", weights_only=True)["specs"]
        except Exception as exc:  # noqa: BLE001 - any unreadable file: no fit continues from it
            log(f"{path}: not a pack's state ({error_line(exc)}); no fit continues from it")
            continue
        held.update((canonical_json(spec), path) for spec in specs)
    return held


def _resume(trainer: PackTrainer, path: Path, held: Callable[[], dict[str, Path]],
            log: Callable[[str], Any], where: str, restart: bool
            ) -> tuple[PackTrainer | None, str | None]:
    """``trainer`` continued from its pack's state at ``path`` when there is one, and a note.

    Where a state an earlier run left cannot be restored as it was taken (``path`` does not
    load, or ``held()`` names other packs' states holding some of these fits), the log says
    why and: with ``restart``, a fresh trainer comes back with the reason as note; without,
    ``None`` (the pack must not train).
    """
    if path.exists():
        try:
            load_checkpoint(trainer, path)
        except Exception as exc:  # noqa: BLE001 - whatever fails, the state was not restored
            why = f"could not continue from {path} ({error_line(exc)})"
        else:
            log(f"{where}: continues from {path} (step {trainer.step})")
            return trainer, None
    else:
        others = sorted({str(held()[canonical_json(s)]) for s in trainer.specs
                         if canonical_json(s) in held()})
        if not others:
            return trainer, None
        why = (f"could not continue from {', '.join(others)}: those fits were packed "
               "otherwise when it was saved (another --pack?), so their state cannot be "
               "restored as it was taken")
    if restart:
        log(f"{where}: {why}; trains from step 0 ({RESTART_FLAG})")
        return PackTrainer(trainer.specs, trainer.datas), f"{why}; trained from step 0"
    log(f"{where}: {why}; not trained: run again with {RESTART_FLAG} to train it from step 0, "
        "or with the --pack it was saved with")
    return None, None


def run_plan(
    plan: Mapping[str, Any],
    out: str | os.PathLike,
    pack: int = 32,
    deadline_s: float | None = None,
    log: Callable[[str], Any] = print,
    checkpoints: str | os.PathLike | None = None,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
    restart_unresumable: bool = False,
) -> int:
    """Train the plan's fits that have no result in ``out`` yet, in packs of at most ``pack``;
    returns how many of the plan's fits have a result there now.

    Packs that would start after ``deadline_s`` seconds are skipped (and logged); each pack
    that ends is appended to ``out/results.jsonl.gz`` at once. Each pack continues from its
    state in ``checkpoints`` (default ``out/checkpoints``, see the module's docstring) and
    saves its state there every ``checkpoint_every_s`` seconds and when it ends. A pack whose
    earlier state cannot be restored as it was taken is not trained (logged), unless
    ``restart_unresumable``: then it trains from step 0, its results lines noting why.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS_FILE
    fits = list(plan["fits"])
    surveys = [fit.get("survey", plan.get("survey")) for fit in fits]
    specs = [FitSpec.from_dict(f["spec"]) for f in fits]
    if dropped := _drop_cut_off(results_path):
        log(f"{results_path}: dropped {dropped} bytes of a pack cut off mid-write")
    ended = _ended(results_path)
    todo = [i for i, f in enumerate(fits) if (surveys[i], f["fit_id"]) not in ended]
    done = len(fits) - len(todo)
    if done:
        log(f"{done} of {len(fits)} fits already have results in {results_path}: skipped")
    folder = Path(checkpoints) if checkpoints is not None else out / CHECKPOINTS_DIR
    kept = _load_npz(out / ARTIFACTS_FILE)
    held: dict[str, Path] | None = None

    def states() -> dict[str, Path]:  # read once, and only when a pack has no state of its own
        nonlocal held
        if held is None:
            held = _held_states(folder, log)
        return held

    started = time.perf_counter()
    for number, positions in enumerate(chunks([specs[i] for i in todo], pack)):
        members = [todo[j] for j in positions]
        elapsed = time.perf_counter() - started
        ids = [fits[i]["fit_id"] for i in members]
        if deadline_s is not None and elapsed > deadline_s:
            log(f"[{elapsed:7.1f}s] deadline passed: skipped pack {number} ({len(ids)} fits)")
            continue
        saved = _checkpoint(folder, ids)
        trainer, note = _resume(PackTrainer([specs[i] for i in members]), saved, states, log,
                                f"[{elapsed:7.1f}s] pack {number}", restart_unresumable)
        if trainer is None:
            continue
        first_step = trainer.step
        steps = trainer.specs[0].train.steps
        log(f"[{elapsed:7.1f}s] pack {number}: {len(ids)} fits x {steps} steps on "
            f"{trainer.device} ({ids[0]} ...)")
        results: list[FitResult] = trainer.run(after_log=_saver(saved, checkpoint_every_s))
        if trainer.step > first_step:  # the final state, in case the run dies before appending
            save_checkpoint(trainer, saved)
        rate = len(ids) * trainer.step / max(trainer.wall_s, 1e-9)
        lines = []
        for k, (i, result) in enumerate(zip(members, results, strict=True)):
            lines.append(_line(surveys[i], fits[i]["fit_id"], specs[i], result, note))
            if result.status == "ok":
                for name, array in trainer.artifacts(k).items():
                    kept[f"{fits[i]['fit_id']}/{name}"] = array
        _save_npz(out / ARTIFACTS_FILE, kept)  # the arrays first: a result line marks it done
        _append(results_path, lines)
        if checkpoints is None:
            saved.unlink(missing_ok=True)  # its results are in: nothing left to continue
        done += len(ids)
        estimates = [r.id_estimate for r in results]
        log(f"[{time.perf_counter() - started:7.1f}s] pack {number} ended in "
            f"{trainer.wall_s:.1f}s ({rate:.0f} fit-steps/s): estimates {estimates}")
    return done


def _checkpoint(folder: str | os.PathLike, ids: Sequence[str]) -> Path:
    """Where the state of the pack of fits ``ids`` is kept: named by a hash of the ids."""
    digest = zlib.crc32("\n".join(ids).encode()) & 0xFFFFFFFF
    return Path(folder) / f"{ids[0]}-{len(ids)}-{digest:08x}.pt"


def merge_plans(plans: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One plan of the fits of ``plans``, in order, each fit tagged with its survey."""
    return {"fits": [{**fit, "survey": fit.get("survey", p.get("survey"))}
                     for p in plans for fit in p["fits"]]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mflow.batch", description="Train plans of fits here, without Ray."
    )
    parser.add_argument("plans", nargs="+", metavar="PLAN.json", help="from `survey export`")
    parser.add_argument("-o", "--out", required=True, help="folder for results.jsonl.gz, "
                        "artifacts.npz and log.txt; a rerun skips the fits with results there")
    parser.add_argument("--pack", type=int, default=32, help="most fits per pack (default 32)")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="start no pack after this many seconds")
    parser.add_argument("--checkpoints", default=None, metavar="DIR",
                        help="keep each pack's state here, also after it ends (default: "
                        "OUT/checkpoints, deleted once the pack's results are in)")
    parser.add_argument("--checkpoint-every-s", type=float, default=CHECKPOINT_EVERY_S,
                        metavar="S", help="save a pack's state at a logged step once S "
                        f"seconds have passed since the last save (default {CHECKPOINT_EVERY_S:g}"
                        "; 0: at every logged step)")
    parser.add_argument(RESTART_FLAG, dest="restart_unresumable", action="store_true",
                        help="train from step 0 a pack whose earlier state cannot be restored "
                        "as it was taken (default: such a pack is not trained, and logged)")
    args = parser.parse_args(argv)
    if not args.checkpoint_every_s >= 0:
        parser.error(f"--checkpoint-every-s: must be >= 0, got {args.checkpoint_every_s:g}")
    if args.pack < 1:
        parser.error(f"--pack: must be >= 1, got {args.pack}")
    plans = []
    for path in args.plans:
        try:
            plans.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            parser.exit(2, f"{path}: cannot read the plan ({exc})\n")
        if not isinstance(plans[-1], dict) or not isinstance(plans[-1].get("fits"), list):
            parser.exit(2, f"{path}: not a plan (no list of 'fits'; write one with "
                        "`survey export`)\n")
    plan = merge_plans(plans)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "a", encoding="utf-8") as logfile:
        def log(line: str) -> None:
            print(line, flush=True)
            logfile.write(line + "\n")
            logfile.flush()

        done = run_plan(plan, out, args.pack, args.deadline_s, log, args.checkpoints,
                        args.checkpoint_every_s, args.restart_unresumable)
    total = len(plan["fits"])
    print(f"{done} of {total} fits have results in {out / RESULTS_FILE}")
    return 0 if done == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
