"""The prior's learning rate in high dimensions: a 1-D segment in R^D, fixed rate against lower.

Adam moves each entry of ``A`` by about its learning rate even where the gradient is only noise;
a row of ``A`` has up to ``D`` entries, so ``A A^T``'s unused directions drift by about
``D lr^2``. This trains the default fit on a 1-D segment (``hypercube``, d = 1, unstandardised)
in ``R^D`` with each given prior learning rate (``train.lr_prior_dim = None``: no scaling) and
prints the estimate and the largest unused eigenvalue every 500 steps, one process per rate.

Run: python benchmarks/prior_rate.py [--dim 400] [--steps 3000] [--rates 1e-2,1e-3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp

import torch

from mflow.config import DataSpec, FitSpec
from mflow.fit import Trainer


def _run(job: tuple[float, int, int]) -> list[tuple[int, int, float]]:
    lr, dim, steps = job
    torch.set_num_threads(1)
    data = DataSpec("hypercube", n=2000, latent_dim=1, ambient_dim=dim, standardize=False)
    spec = FitSpec(data=data).replace(
        train={"lr_prior": lr, "lr_prior_dim": None, "steps": steps, "log_every": 500}
    )
    rows: list[tuple[int, int, float]] = []
    Trainer(spec).run(lambda p, _: rows.append((p.step, p.estimate, p.eigenvalues[1])))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=400)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rates", default="1e-2,1e-3")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    with mp.get_context("spawn").Pool(len(rates)) as pool:
        runs = pool.map(_run, [(lr, args.dim, args.steps) for lr in rates])
    steps = [step for step, _, _ in runs[0]]
    print(f"1-D segment in R^{args.dim}: estimate (largest unused eigenvalue) by step\n")
    print("| prior lr | " + " | ".join(f"step {s}" for s in steps) + " |")
    print("|---" * (len(steps) + 1) + "|")
    for lr, rows in zip(rates, runs, strict=True):
        print(f"| {lr:g} | " + " | ".join(f"{e} ({v:.2g})" for _, e, v in rows) + " |")


if __name__ == "__main__":
    main()
