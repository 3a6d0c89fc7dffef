"""Speed and memory of packed fits, the survey pipeline and the library, as one table.

The rows (issue 7):

1. Packing. 2-D toy fits (sine, the default model, batch 256): one fit per trial against packs
   of 8, 32 and 128 fits, in fit-steps per second. Both sides run the way a survey runs them
   here: one single-thread trial per core, every core busy (``--cores`` processes side by side,
   each running ``Trainer.run`` or ``PackTrainer.run`` with logging every 20 steps); medians
   over rounds that interleave the sizes.
2. Pipeline overhead. The wall time of ``run_survey`` (Ray already started, MLflow on SQLite,
   Parquet, checkpoints every 30 s) over the wall time of the same fits run bare by
   ``mflow.fit.fit`` (or ``fit_pack``), one process per core: unpacked, 2 fits per core; and
   packed, one pack of 8 per core. Ray's workers run at niceness 0 here, as the reference does
   (Ray's default, 15, lets any other work on a shared machine go first), and the MLflow store
   exists before the survey starts (creating a SQLite store costs several seconds once).
3. Library against a bare PyTorch loop of the same architecture (``bench_library.measure``).
4. Early stop. Sine and S-curve, 3 seeds each, the defaults plus ``early_stop_window=4``:
   steps used, the step from which the estimate was right, against the paper's budgets.
5. Memory. Peak resident memory that training adds per fit of the 784-D conv flow (the MNIST
   jobs' settings: batch 128, 5,000 images), measured alone and in a pack of 4, and what
   ``pipelines.execution.packing.step_cost`` counts; then the GPU plan those numbers give.

Run: python benchmarks/run.py [--seconds 10] [--fit-seconds 30] [--cores N] [--only 12345]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from datetime import date

import torch

from mflow.config import DataSpec, FitSpec, ModelSpec
from mflow.datasets import Dataset
from mflow.fit import FitResult, Trainer, fit
from mflow.pack import PackTrainer, fit_pack

PAPER_STEPS = {"sine": 10_000, "scurve": 200_000}  # the paper's training budgets
GPU_MEMORY = 80e9  # bytes of one modern GPU (an H100 80GB) for the plan
GPU_FLOPS = 10e12  # effective FLOP/s assumed for packed 16-channel convs in float32 on it
MNIST = {"batch_size": 128, "steps": 20_000, "n": 5000}  # jobs/mnist_digits.yaml


def _toy(seed: int, **train) -> FitSpec:
    return FitSpec(data=DataSpec("sine", n=2000, seed=seed)).replace(
        train={"seed": seed, "device": "cpu", **train}
    )


def _images(n: int) -> Dataset:
    """Random 28x28 images: speed and memory of a 784-D conv flow do not depend on pixels."""
    gen = torch.Generator().manual_seed(0)
    return Dataset("images", torch.rand(n, 1, 28, 28, generator=gen).numpy())


def _conv(seed: int = 0) -> FitSpec:
    return FitSpec(model=ModelSpec(kind="conv")).replace(
        train={"batch_size": MNIST["batch_size"], "device": "cpu", "seed": seed}
    )


# -- workers (one process per core; each uses one thread) ----------------------------------


def _start() -> None:
    torch.set_num_threads(1)


def _pack_rate(job: tuple[int, float, int]) -> float:
    """Fit-steps/s of one trial training ``size`` toy fits for about ``seconds``."""
    size, seconds, seed = job
    specs = [_toy(seed + k, steps=10**9, log_every=20) for k in range(size)]
    marks: list[tuple[float, int]] = []

    def stop(*args) -> bool:  # (point, trainer) or (k, point, trainer)
        trainer, now = args[-1], time.perf_counter()
        if not marks or marks[-1][1] != trainer.step:
            marks.append((now, trainer.step))
        return now - marks[0][0] >= seconds

    if size == 1:
        Trainer(specs[0]).run(stop)
    else:
        PackTrainer(specs).run(stop)
    (t0, s0), (t1, s1) = marks[0], marks[-1]
    return size * (s1 - s0) / (t1 - t0)


def _bare(job: tuple[str, ...]) -> float:
    specs = [FitSpec.from_dict(json.loads(text)) for text in job]
    if len(specs) == 1:
        return fit(specs[0]).wall_s
    return fit_pack(specs)[0].wall_s


def _early(dataset: str) -> list[FitResult]:
    base = FitSpec(data=DataSpec(dataset, n=2000)).replace(
        train={"early_stop_window": 4, "device": "cpu"}
    )
    return fit_pack([base.replace(train={"seed": s}, data={"seed": s}) for s in range(3)])


def _peak_step_memory(k: int) -> int:
    """Bytes of resident memory that two training steps add to a pack of ``k`` conv fits
    (peak during the steps over resident before them)."""
    import ctypes

    data = _images(MNIST["n"])
    specs = [_conv(seed) for seed in range(k)]
    trainer = Trainer(specs[0], data) if k == 1 else PackTrainer(specs, [data] * k)
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed memory back, so the steps' shows up
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the resident size now

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith(key))
        return int(line.split()[1]) * 1024

    before = status("VmRSS")
    for _ in range(2):
        trainer._train_step()
    return status("VmHWM") - before


# -- the rows --------------------------------------------------------------------------------


def _pool(cores: int):
    return mp.get_context("spawn").Pool(cores, initializer=_start)


def packing(pool, cores: int, seconds: float, sizes: tuple[int, ...],
            rounds: int) -> dict[int, list[float]]:
    """``{pack size: [fit-steps/s of all cores, per round]}``, size 1 being one fit per trial.
    Rounds interleave the sizes, so that the load of a shared machine falls on all alike."""
    rates: dict[int, list[float]] = {size: [] for size in (1, *sizes)}
    for _ in range(rounds):
        for size in rates:
            jobs = [(size, seconds * (2 if size >= 128 else 1), 1000 * i) for i in range(cores)]
            rates[size].append(sum(pool.map(_pack_rate, jobs, chunksize=1)))
    return rates


def packing_rows(rates: dict[int, list[float]]) -> list[tuple[str, str]]:
    """Median rate of each size, and the median over rounds of its ratio to one per trial."""
    single = statistics.median(rates[1])
    rows = [("1. one fit per trial (sine)", f"{single:,.0f} fit-steps/s")]
    for size, values in rates.items():
        if size > 1:
            ratio = statistics.median(v / s for v, s in zip(values, rates[1], strict=True))
            rows.append((f"1. packs of {size}", f"{statistics.median(values):,.0f} fit-steps/s "
                         f"= {ratio:.1f}x (target 15x)"))
    return rows


def overhead(pool, cores: int, fit_seconds: float, per_core_rate: float,
             pack_rate: float) -> list[tuple[str, str]]:
    import ray
    from mlflow import MlflowClient

    from pipelines.execution.survey import run_survey
    from pipelines.job import parse_job

    # Ray starts its workers at niceness 15: on a machine shared with other work they would
    # yield to it while the bare reference (niceness 0) does not. Measure both at 0.
    os.environ.setdefault("RAY_worker_niceness", "0")
    started = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    ray_s = time.perf_counter() - started
    rows = []
    cases = [
        ("unpacked", 2 * cores, 1, max(100, int(round(per_core_rate * fit_seconds, -2)))),
        ("packs of 8", 8 * cores, 8, max(100, int(round(pack_rate / 8 * fit_seconds, -2)))),
    ]
    try:
        for label, fits, pack, steps in cases:
            specs = [_toy(s, steps=steps) for s in range(fits)]
            jobs = [tuple(s.to_json() for s in specs[i : i + pack])
                    for i in range(0, fits, pack)]
            started = time.perf_counter()
            pool.map(_bare, jobs, chunksize=1)
            bare_s = time.perf_counter() - started
            raw = {"name": f"overhead-{pack}", "data": {"dataset": "sine", "n": 2000},
                   "grid": {"seed": list(range(fits))}, "train": {"steps": steps},
                   "resources": {"cpu": 1, "pack": pack, "checkpoint_every_s": 30}}
            with tempfile.TemporaryDirectory() as out:
                uri = f"sqlite:///{out}/mlflow.db"
                MlflowClient(uri).search_experiments()  # an existing store, as ./mlflow.db is
                started = time.perf_counter()
                outcome = run_survey(parse_job(raw), out, uri)
                survey_s = time.perf_counter() - started
            assert outcome.counts == {"ok": fits}, outcome
            rows.append((
                f"2. survey overhead, {label}",
                f"{survey_s:.0f} s / {bare_s:.0f} s bare = {survey_s / bare_s:.2f} "
                f"({fits} fits of {steps} steps, ~{bare_s * cores / len(jobs):.0f} s each "
                f"trial; Ray start {ray_s:.0f} s not counted)",
            ))
    finally:
        ray.shutdown()
    return rows


def library(rounds: int, steps: int) -> list[tuple[str, str]]:
    from bench_library import measure

    torch.set_num_threads(1)
    return [
        (f"3. library vs bare loop, {name.split(' (')[0]}",
         f"{lib:.1f} vs {bare:.1f} steps/s: bare/library = {bare / lib:.2f}")
        for name, lib, bare in measure(rounds, steps)
    ]


def early_stop(pool) -> list[tuple[str, str]]:
    rows = []
    for dataset, results in zip(PAPER_STEPS, pool.map(_early, list(PAPER_STEPS)), strict=True):
        true = results[0].true_dim
        right_from = []
        for r in results:
            wrong = [p.step for p in r.curve if p.estimate != true]
            right_from.append(next((p.step for p in r.curve if p.step > max(wrong, default=0)),
                                   None))
        steps = [r.steps for r in results]
        stops = sum(r.stop_reason == "early_stop" for r in results)
        rows.append((
            f"4. early stop, {dataset} (true {true})",
            f"estimates {[r.id_estimate for r in results]}, right from step "
            f"{max(s or 0 for s in right_from)}, stopped at {steps} ({stops}/3 early); "
            f"paper {PAPER_STEPS[dataset]:,}: {PAPER_STEPS[dataset] / max(steps):.1f}x fewer",
        ))
    return rows


def memory(pool) -> tuple[list[tuple[str, str]], list[str]]:
    from pipelines.execution.packing import MEMORY_USE, step_cost

    one, four = pool.map(_peak_step_memory, [1, 4], chunksize=1)
    cost = step_cost(_conv(), _images(MNIST["n"]))
    data = MNIST["n"] * 28 * 28 * 4  # float32 images, resident before training starts
    per_fit = max(four / 4 + data, cost.memory)  # plan with the larger of measured and counted
    rows = [(
        "5. peak memory per fit, 784-D conv",
        f"training adds {one / 2**20:.0f} MiB alone, {four / 4 / 2**20:.0f} MiB/fit in a pack "
        f"of 4 (CPU RSS), + {data / 2**20:.0f} MiB data each; counted: "
        f"{cost.memory / 2**20:.0f} MiB with data; {cost.flops / 1e9:.1f} GFLOP per fit-step "
        f"(batch {MNIST['batch_size']})",
    )]
    by_memory = int(MEMORY_USE * GPU_MEMORY // per_fit)
    fit_s = cost.flops * MNIST["steps"] / GPU_FLOPS
    plan = [
        f"GPU plan (784-D conv, batch {MNIST['batch_size']}, {MNIST['steps']:,} steps; "
        f"{GPU_MEMORY / 1e9:.0f} GB GPU, {GPU_FLOPS / 1e12:.0f} TFLOP/s effective assumed):",
        f"  memory holds {by_memory} fits per GPU ({per_fit / 2**20:.0f} MiB each, "
        f"{MEMORY_USE:.0%} of memory); compute, not memory, is the limit.",
        f"  packed to saturation: {cost.flops * MNIST['steps'] / 1e12:.0f} TFLOP per fit, "
        f"{fit_s:.0f} GPU-s per fit = {3600 / fit_s:.0f} fits per GPU-hour.",
        "  suggested: resources.pack 32, gpu 0.25 (4 trials of 32 fits per GPU, "
        f"{4 * 32 * per_fit / 1e9:.0f} GB), or pack auto.",
    ]
    return rows, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per packing measurement")
    parser.add_argument("--fit-seconds", type=float, default=30.0, help="per fit in item 2")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--pack-rounds", type=int, default=3, help="packing rounds (item 1)")
    parser.add_argument("--rounds", type=int, default=3, help="library rounds (item 3)")
    parser.add_argument("--only", default="12345", help="which items to run, e.g. 14")
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    plan: list[str] = []
    with _pool(args.cores) as pool:
        if "1" in args.only or "2" in args.only:
            sizes = (8, 32, 128) if "1" in args.only else (8,)
            rates = packing(pool, args.cores, args.seconds, sizes, args.pack_rounds)
            rows += packing_rows(rates) if "1" in args.only else []
        if "2" in args.only:
            per_core = {k: statistics.median(v) / args.cores for k, v in rates.items()}
            rows += overhead(pool, args.cores, args.fit_seconds, per_core[1], per_core[8])
        if "3" in args.only:
            rows += library(args.rounds, 100)
        if "4" in args.only:
            rows += early_stop(pool)
        if "5" in args.only:
            found, plan = memory(pool)
            rows += found
    print(f"{date.today()}, {platform.machine()} {_cpu()}, {args.cores} cores "
          f"(one single-thread process per core), torch {torch.__version__}")
    width = max(len(name) for name, _ in rows)
    print(f"| {'measurement':{width}s} | result |")
    print(f"|{'-' * (width + 2)}|--------|")
    for name, value in rows:
        print(f"| {name:{width}s} | {value} |")
    for line in plan:
        print(line)


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(x for x in f if x.startswith("model name")).split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    main()
