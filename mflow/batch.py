"""Run a plan of fits in one process, packed, without Ray: for a lone GPU machine.

``survey export JOB -o plan.json`` writes a plan: the survey's name and, per fit, its id and
its ``FitSpec``. ``python -m mflow.batch plan.json [more.json ...] -o OUT`` trains the fits of
one or more plans here, in packs of same-shaped fits (``mflow.pack``), in plan order, and
writes:

- ``OUT/results.jsonl.gz``: one JSON line per ended fit, ``{"survey", "fit_id", "spec",
  "result"}`` (numbers to 7 significant digits);
  each pack is appended as its own gzip member once it ends, so a killed run keeps every pack
  that ended before it;
- ``OUT/artifacts.npz``: per fit, ``<fit_id>/samples``, ``<fit_id>/projection`` and
  ``<fit_id>/index`` (``mflow.fit.fit_artifacts``), rewritten after each pack;
- ``OUT/log.txt``: progress and the measured fit-steps per second.

With ``--checkpoints DIR`` each pack's training state (``PackTrainer.state_dict``) is saved in
``DIR`` when it ends, and a pack whose state is there continues from it: a finished pack is not
trained again, its results are only read anew from the weights it stopped with (for a result
field added since it trained).

``survey import JOB OUT`` records a survey's results in its Parquet store and MLflow, as if
``survey run`` had trained them. ``--deadline-s`` skips the packs that would start after it, so
a run with a hard time limit ends with whole packs only.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mflow.config import FitSpec
from mflow.fit import FitResult
from mflow.pack import PackTrainer, pack_key

__all__ = ["chunks", "main", "merge_plans", "read_results", "run_plan"]


def chunks(specs: Sequence[FitSpec], size: int) -> list[list[int]]:
    """Indices of ``specs`` in packs of at most ``size`` equal ``pack_key``s, in plan order.

    Example:
        >>> from mflow.config import DataSpec
        >>> specs = [FitSpec(data=DataSpec(d, seed=s)) for d in ("sine", "line") for s in (0, 1)]
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
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def read_results(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The lines of a ``results.jsonl.gz``; a pack cut off mid-write is dropped, not half read."""
    with open(path, "rb") as f:
        raw = f.read()
    text = b""
    while raw:
        decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)  # one gzip member
        try:
            member = decomp.decompress(raw)
        except zlib.error:  # a corrupt member ends the readable part
            break
        if not decomp.eof:
            break
        text += member
        raw = decomp.unused_data
    for line in text.decode("utf-8").splitlines():
        if line.strip():
            yield json.loads(line)


def run_plan(
    plan: Mapping[str, Any],
    out: str | os.PathLike,
    pack: int = 32,
    deadline_s: float | None = None,
    log: Callable[[str], Any] = print,
    checkpoints: str | os.PathLike | None = None,
) -> int:
    """Train the plan's fits in packs of at most ``pack``; returns how many fits ended.

    Packs that would start after ``deadline_s`` seconds are skipped (and logged); each pack
    that ends is appended to ``out/results.jsonl.gz`` at once. With ``checkpoints``, each
    pack continues from its state saved there (if any) and saves its state there when it ends.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fits = list(plan["fits"])
    specs = [FitSpec.from_dict(f["spec"]) for f in fits]
    started = time.perf_counter()
    kept: dict[str, np.ndarray] = {}
    done = 0
    for number, members in enumerate(chunks(specs, pack)):
        elapsed = time.perf_counter() - started
        ids = [fits[i]["fit_id"] for i in members]
        if deadline_s is not None and elapsed > deadline_s:
            log(f"[{elapsed:7.1f}s] deadline passed: skipped pack {number} ({len(ids)} fits)")
            continue
        trainer = PackTrainer([specs[i] for i in members])
        saved = None if checkpoints is None else _checkpoint(checkpoints, ids)
        if saved is not None and saved.exists():
            trainer.load_state_dict(torch.load(saved, map_location=trainer.device,
                                               weights_only=True))
            log(f"[{elapsed:7.1f}s] pack {number}: continues from {saved} (step {trainer.step})")
        steps = trainer.specs[0].train.steps
        log(f"[{elapsed:7.1f}s] pack {number}: {len(ids)} fits x {steps} steps on "
            f"{trainer.device} ({ids[0]} ...)")
        results: list[FitResult] = trainer.run()
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            torch.save(trainer.state_dict(), saved.with_name(saved.name + ".tmp"))
            os.replace(saved.with_name(saved.name + ".tmp"), saved)
        rate = len(ids) * trainer.step / max(trainer.wall_s, 1e-9)
        lines = []
        for k, (i, result) in enumerate(zip(members, results, strict=True)):
            lines.append(json.dumps({
                "survey": fits[i].get("survey", plan.get("survey")),
                "fit_id": fits[i]["fit_id"], "spec": specs[i].to_dict(),
                "result": _plain(result.to_dict()),
            }))
            if result.status == "ok":
                for name, array in trainer.artifacts(k).items():
                    kept[f"{fits[i]['fit_id']}/{name}"] = array
        _append(out / "results.jsonl.gz", lines)
        _save_npz(out / "artifacts.npz", kept)
        done += len(ids)
        estimates = [r.id_estimate for r in results]
        log(f"[{time.perf_counter() - started:7.1f}s] pack {number} ended in "
            f"{trainer.wall_s:.1f}s ({rate:.0f} fit-steps/s): estimates {estimates}")
    return done


def _checkpoint(folder: str | os.PathLike, ids: Sequence[str]) -> Path:
    """Where the state of the pack of fits ``ids`` is kept: named by a hash of the ids."""
    digest = zlib.crc32("\n".join(ids).encode()) & 0xFFFFFFFF
    return Path(folder) / f"{ids[0]}-{len(ids)}-{digest:08x}.pt"


def _plain(value: Any) -> Any:
    """JSON-ready numbers: 7 significant digits (a 784-D fit's curve holds 784 eigenvalues per
    point), and ``None`` for a diverged fit's NaN or infinity, which JSON cannot hold."""
    if isinstance(value, float):
        return float(f"{value:.7g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


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
                        "artifacts.npz and log.txt")
    parser.add_argument("--pack", type=int, default=32, help="most fits per pack (default 32)")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="start no pack after this many seconds")
    parser.add_argument("--checkpoints", default=None, metavar="DIR",
                        help="save each pack's state here when it ends; continue from it")
    args = parser.parse_args(argv)
    plans = []
    for path in args.plans:
        try:
            plans.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            parser.exit(2, f"{path}: cannot read the plan ({exc})\n")
    plan = merge_plans(plans)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "a", encoding="utf-8") as logfile:
        def log(line: str) -> None:
            print(line, flush=True)
            logfile.write(line + "\n")
            logfile.flush()

        done = run_plan(plan, out, args.pack, args.deadline_s, log, args.checkpoints)
    total = len(plan["fits"])
    print(f"{done} of {total} fits ended; results in {out / 'results.jsonl.gz'}")
    return 0 if done == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
