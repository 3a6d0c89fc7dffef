"""Where a survey run's fixed cost goes: ``survey run`` of one 50-step sine fit, profiled.

The fit itself takes a fraction of a second, so the wall time is the cost every survey pays
before and after its fits: the interpreter and its imports, a local Ray, the MLflow store,
Tune's trial (a worker process that imports torch and this project), recording the fit, the
summary and Ray's shut-down. The survey runs in a subprocess under ``cProfile`` (the driver's
main thread); printed are the wall time from launch to exit and the cumulative seconds of
each phase's function, with what is left over.

``--without-bytecode`` alternates each round with one that finds no compiled bytecode
(``PYTHONPYCACHEPREFIX`` an empty folder, ``PYTHONDONTWRITEBYTECODE=1``): every process, Ray's
and the trial's included, then compiles what it imports from source, as it did where the
installer wrote no bytecode and the environment forbade writing it.

    python benchmarks/fixed_cost.py [--rounds 3] [--without-bytecode]
"""

from __future__ import annotations

import argparse
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

TINY = """\
name: tiny
data: {dataset: sine, n: 2000}
train: {steps: 50}
grid: {seed: [0]}
resources: {cpu: 1}
"""

# (phase, file the function is in, function name); cumulative times of the driver's main thread
PHASES = [
    ("imports of the command line", "pipelines/cli/__init__.py", "<module>"),
    ("local Ray started", "pipelines/execution/cluster.py", "init_ray"),
    ("MLflow store and survey run (waited for)", "pipelines/execution/survey.py",
     "_open_tracker"),
    ("Tune: the trial, start to end", "pipelines/execution/trials.py", "run_trials"),
    ("summary.parquet", "pipelines/analysis/stored.py", "update_summary"),
    ("Ray shut down", "pipelines/execution/survey.py", "_shutdown"),
]


def profile_once(work: Path, env: dict[str, str] | None = None,
                 ) -> tuple[float, dict[str, float], float]:
    """One profiled ``survey run`` (in ``env``, default this process's): wall seconds, seconds
    per phase, the fit's own seconds."""
    out = work / f"out-{time.monotonic_ns()}"
    stats = work / f"{out.name}.prof"
    command = [sys.executable, "-m", "cProfile", "-o", str(stats), "-m", "pipelines.cli",
               "run", str(work / "tiny.yaml"), "--out", str(out),
               "--tracking-uri", f"sqlite:///{out}.db"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"survey run failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    table = pstats.Stats(str(stats)).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    phases = {}
    for phase, path, name in PHASES:
        phases[phase] = sum(ct for (file, _, fn), (_, _, _, ct, _) in table.items()
                            if file.endswith(path) and fn == name)
    fit_s = float(pd.read_parquet(out / "tiny" / "fits")["wall_s"].iloc[0])
    return wall, phases, fit_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--without-bytecode", action="store_true",
                        help="alternate each round with one that finds no compiled bytecode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "tiny.yaml").write_text(TINY)
        (work / "no-bytecode").mkdir()
        bare = {**os.environ, "PYTHONPYCACHEPREFIX": str(work / "no-bytecode"),
                "PYTHONDONTWRITEBYTECODE": "1"}
        # each variant's environment (None: this process's) and the rounds it ran
        variants: dict[str, tuple[dict[str, str] | None, list]] = {"with bytecode": (None, [])}
        if args.without_bytecode:
            variants["without bytecode"] = (bare, [])
        for _ in range(args.rounds):
            for env, runs in variants.values():
                runs.append(profile_once(work, env))
    for name, (_, runs) in variants.items():
        print(f"-- {name}")
        report(runs)
    if args.without_bytecode:
        walls = {name: statistics.median(w for w, _, _ in runs)
                 for name, (_, runs) in variants.items()}
        print(f"wall without bytecode / with: "
              f"{walls['without bytecode'] / walls['with bytecode']:.2f}")


def report(runs: list[tuple[float, dict[str, float], float]]) -> None:
    """The wall times of the rounds and the median seconds of each phase."""
    walls = [wall for wall, _, _ in runs]
    print(f"survey run of one 50-step fit, {len(runs)} rounds: wall "
          f"{', '.join(f'{w:.1f}' for w in walls)} s (median {statistics.median(walls):.1f})")
    for phase, _, _ in PHASES:
        values = [phases[phase] for _, phases, _ in runs]
        print(f"  {phase:42s} {statistics.median(values):5.1f} s")
    fits = [fit for _, _, fit in runs]
    trial = [phases[PHASES[3][0]] for _, phases, _ in runs]
    print(f"    of which the fit trained               {statistics.median(fits):5.1f} s")
    print(f"    of which the trial's start, Tune, end  "
          f"{statistics.median(t - f for t, f in zip(trial, fits, strict=True)):5.1f} s")
    rest = [w - sum(p.values()) for w, p, _ in runs]
    print(f"  interpreter start, planning, the rest      {statistics.median(rest):5.1f} s")


if __name__ == "__main__":
    main()
