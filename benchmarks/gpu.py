"""One GPU session: measure packed fits on the GPU, then train the image surveys in the time left.

Made for a GPU machine lent for a few minutes, with only ``mflow`` and PyTorch on it:

1. Probe: the per-digit MNIST pack (30 fits of the 784-D conv flow) for a few dozen steps:
   seconds per pack step, and the peak GPU memory per fit.
2. Choose the largest step budget in ``--steps`` for which every plan's packs fit in the time
   left (each plan was exported for each budget: ``PLANS/<job>-<steps>.json``), and train those
   plans with ``mflow.batch.run_plan`` into ``--out`` (``survey import`` brings them home).
3. With the time still left: fit-steps per second of packed 2-D toy fits (packs of 1 to 512)
   and of 784-D conv fits (packs of 1 to 32), and peak memory per fit.

Writes ``OUT/gpu.json`` (probe, choice, throughput) beside ``mflow.batch``'s files.

Run: python benchmarks/gpu.py --plans PLANS --out OUT [--budget-s 520]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mflow.batch import chunks, merge_plans, run_plan
from mflow.config import DataSpec, FitSpec, ModelSpec
from mflow.datasets import Dataset
from mflow.pack import PackTrainer

CUDA = torch.cuda.is_available()  # False only when this is tried out on a CPU

JOBS = ("mnist_digits", "fading_square", "synthetic_mnist", "mnist")  # in priority order


def _plan(folder: Path, job: str, steps: int) -> dict:
    return json.loads((folder / f"{job}-{steps}.json").read_text())


def _timed_pack(specs: list[FitSpec], datas=None, warm: int = 10, timed: int = 40) -> dict:
    """Seconds per pack step after ``warm`` steps, and peak GPU memory per fit."""
    specs = [s.replace(train={"steps": warm + timed, "log_every": warm}) for s in specs]
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    built = time.perf_counter()
    trainer = PackTrainer(specs, datas)
    build_s = time.perf_counter() - built
    marks: dict[int, float] = {}

    def mark(k: int, point, _trainer) -> None:
        if k == 0:
            if CUDA:
                torch.cuda.synchronize()
            marks[point.step] = time.perf_counter()

    trainer.run(mark)
    steps = sorted(marks)
    per_step = (marks[steps[-1]] - marks[steps[0]]) / (steps[-1] - steps[0])
    return {
        "fits": len(specs),
        "s_per_pack_step": per_step,
        "fit_steps_per_s": len(specs) / per_step,
        "peak_mib_per_fit": torch.cuda.max_memory_allocated() / 2**20 / len(specs)
        if CUDA else None,
        "build_s": build_s,
    }


def _choose(plans: Path, jobs: list[str], budgets: list[int], per_step: float,
            left_s: float) -> dict[str, int]:
    """Per plan, in priority order, the largest step budget that still leaves the plans after
    it their smallest one; each pack is costed at ``per_step`` a step (the probe's 30-fit pack,
    the largest here), plus 15 s to load and build."""
    def cost(job: str, steps: int) -> float:
        specs = [FitSpec.from_dict(f["spec"]) for f in _plan(plans, job, steps)["fits"]]
        return len(chunks(specs, 32)) * (steps * per_step * 1.15 + 15.0)

    choice = {}
    for i, job in enumerate(jobs):
        rest = sum(cost(j, min(budgets)) for j in jobs[i + 1 :])
        for steps in sorted(budgets, reverse=True):
            if cost(job, steps) + rest <= left_s:
                choice[job] = steps
                left_s -= cost(job, steps)
                break
    return choice


def _throughput(seconds_left: float) -> list[dict]:
    """Packed fit-steps/s on the GPU: 2-D sine fits and 784-D conv fits of random images."""
    rows = []
    gen = torch.Generator().manual_seed(0)
    images = Dataset("images", torch.rand(5000, 1, 28, 28, generator=gen).numpy())
    conv = FitSpec(data=DataSpec("mnist", n=5000), model=ModelSpec(kind="conv"))
    conv = conv.replace(train={"batch_size": 128})
    toy = FitSpec(data=DataSpec("sine", n=2000))
    started = time.perf_counter()
    for kind, sizes in (("sine 2-D", (1, 8, 32, 128, 512)), ("conv 784-D", (1, 8, 32))):
        for k in sizes:
            if time.perf_counter() - started > seconds_left:
                return rows
            if kind == "sine 2-D":
                specs = [toy.replace(data={"seed": i}, train={"seed": i}) for i in range(k)]
                row = _timed_pack(specs, warm=20, timed=100)
            else:
                specs = [conv.replace(train={"seed": i}) for i in range(k)]
                row = _timed_pack(specs, [images] * k, warm=5, timed=20)
            rows.append({"model": kind, **row})
            print(f"throughput {kind} pack {k}: {row}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plans", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--budget-s", type=float, default=520.0)
    parser.add_argument("--steps", default="20000,12000,8000,5000,3000")
    parser.add_argument("--probe-steps", type=int, default=40)
    parser.add_argument("--jobs", default=",".join(JOBS), help="plans to train, in order")
    parser.add_argument("--reserve-s", type=float, default=60.0,
                        help="seconds kept for the throughput rows")
    args = parser.parse_args()
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "device": torch.cuda.get_device_name(0) if CUDA else "cpu", "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    budgets = [int(s) for s in args.steps.split(",")]
    jobs = args.jobs.split(",")
    digits = [FitSpec.from_dict(f["spec"]) for f in
              _plan(args.plans, jobs[0], budgets[-1])["fits"]]
    report["probe"] = _timed_pack(digits, warm=args.probe_steps // 4, timed=args.probe_steps)
    print(f"probe: {report['probe']}", flush=True)
    left = args.budget_s - (time.perf_counter() - started) - args.reserve_s
    choice = _choose(args.plans, jobs, budgets, report["probe"]["s_per_pack_step"], left)
    report["steps"] = choice
    print(f"chosen budgets: {choice} ({left:.0f} s left)", flush=True)
    (args.out / "gpu.json").write_text(json.dumps(report, indent=1))
    if choice:
        plan = merge_plans([_plan(args.plans, job, steps) for job, steps in choice.items()])
        shortest = min(choice.values()) * report["probe"]["s_per_pack_step"]
        run_plan(plan, args.out, pack=32, deadline_s=left - shortest,
                 log=lambda line: print(line, flush=True))
    left = args.budget_s - (time.perf_counter() - started)
    report["throughput"] = _throughput(left - 10.0)
    (args.out / "gpu.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
