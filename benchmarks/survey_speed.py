"""Survey wall time, as a user meets it: ``survey run`` end to end, variants side by side.

Each variant is one ``survey run`` subprocess (interpreter start, imports, a local Ray, a fresh
SQLite MLflow store, the fits, baselines, summary), timed from launch to exit, in a fresh
results folder. Variants of one case alternate over ``--rounds`` so that the noise of a shared
machine falls on all of them alike; printed are each variant's times, the estimates it read,
how many fits settled, and the ratio of medians to the first variant.

Cases:

- ``quickstart``: ``jobs/quickstart.yaml`` one fit per trial, full 4,000 steps (``single``),
  against packed with early stop (``packed``: ``resources.pack: auto``,
  ``train.early_stop_window: 5``, which the job file ships with).
- ``sines16``: 16 sine fits of 2,000 steps (seeds 0-15), one per trial against one pack.

    python benchmarks/survey_speed.py [--cases quickstart sines16] [--rounds 1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SURVEY = str(Path(sys.executable).with_name("survey"))

SINES16 = """\
name: sines16
data: {dataset: sine, n: 2000}
train: {steps: 2000}
grid: {seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]}
resources: {cpu: 1}
"""

CASES = {
    "quickstart": (
        str(ROOT / "jobs" / "quickstart.yaml"),
        {
            "single": ["resources.pack=1", "train.early_stop_window=0"],
            "packed": ["resources.pack=auto", "train.early_stop_window=5"],
        },
    ),
    "sines16": (
        None,
        {"single": ["resources.pack=1"], "packed": ["resources.pack=16"]},
    ),
}


def run_once(job: str, sets: list[str], work: Path) -> tuple[float, pd.DataFrame]:
    out = work / f"out-{time.monotonic_ns()}"
    command = [SURVEY, "run", job, "--out", str(out),
               "--tracking-uri", f"sqlite:///{out}.db"]
    for value in sets:
        command += ["--set", value]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n"
                         f"{done.stderr[-3000:]}")
    name = next(p.name for p in out.iterdir() if p.is_dir())
    return wall, pd.read_parquet(out / name / "fits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "sines16.yaml").write_text(SINES16)
        for case in args.cases:
            job, variants = CASES[case]
            job = job or str(work / f"{case}.yaml")
            times: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(args.rounds):
                for variant, sets in variants.items():
                    wall, fits = run_once(job, sets, work)
                    times[variant].append(wall)
                    by = fits.groupby("dataset")["id_estimate"].apply(
                        lambda s: " ".join(str(v) for v in sorted(s)))
                    print(f"{case:10s} {variant:7s} {wall:6.1f} s  estimates "
                          f"{dict(by)}  settled {int(fits['settled'].sum())}/{len(fits)}  "
                          f"steps {int(fits['steps'].min())}-{int(fits['steps'].max())}",
                          flush=True)
            first = statistics.median(next(iter(times.values())))
            for variant, walls in times.items():
                print(f"{case:10s} {variant:7s} median {statistics.median(walls):6.1f} s, "
                      f"{first / statistics.median(walls):.2f}x the first variant's speed")


if __name__ == "__main__":
    main()
