"""Dimension across scales on data of known dimension and noise (issue 15's known answers).

Each case is a constructed manifold (``mflow.datasets.manifolds``) with isotropic Gaussian
noise of std ``s`` added after standardising (``data.noise``), fitted at several data-noise
floors as one pack (``mflow.pack.fit_pack``; one seed). Printed per case: the threshold
rule's count (the rank of ``A A^T``) at each floor, the log-volume's finite-difference reading
between neighbouring floors, and the scale readout across all floors (``mflow.scales``):
dimension, noise scale (against the true ``s``) and the floors where it holds.

    python benchmarks/scales.py                         # the development cases and the held-out one
    python benchmarks/scales.py --cases warped-2-10-0.01 --steps 3000

A case is ``family-d-D-s`` (``s`` = ``none`` for noiseless). The held-out case
(``warped-3-12-0.02``) was written down before any result of this readout was seen and was
used to choose nothing.
"""

from __future__ import annotations

import argparse
import time

import torch

from mflow.config import DataSpec, FitSpec
from mflow.pack import fit_pack
from mflow.scales import log_volume, scale_readout

FAMILIES = {"warped": "warped_subspace", "cube": "hypercube", "affine": "affine"}
DEVELOPMENT = ["warped-2-10-0.003", "warped-2-10-0.01", "warped-2-10-0.03", "warped-2-10-none"]
HELD_OUT = ["warped-3-12-0.02"]
FLOORS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]


def case_specs(case: str, floors: list[float], steps: int, n: int, seed: int) -> list[FitSpec]:
    """One spec per floor: the default vector configuration but for the steps, and sigma_x
    annealed every 20 steps (so that the finest floor is reached by step 800)."""
    family, d, dim, noise = case.split("-")
    data = DataSpec(FAMILIES[family], n=n, latent_dim=int(d), ambient_dim=int(dim),
                    seed=seed, noise=None if noise == "none" else float(noise))
    return [FitSpec(data=data).replace(train={
        "steps": steps, "noise_floor": floor, "noise_decay_every": 20, "log_every": 100,
        "seed": seed}) for floor in floors]


def run_case(case: str, floors: list[float], steps: int, n: int, seed: int) -> list[str]:
    specs = case_specs(case, floors, steps, n, seed)
    start = time.perf_counter()
    results = fit_pack(specs)
    wall = time.perf_counter() - start
    sigma2 = specs[0].prior.sigma2
    volumes = [log_volume(r.eigenvalues, sigma2) for r in results]
    out = scale_readout(floors, volumes, len(results[0].eigenvalues), sigma2=sigma2)
    noise = case.split("-")[3]
    ranks = " ".join(str(r.id_rank) for r in results)
    steps_read = " ".join(f"{d:.1f}" for d in out.dimensions)
    held = "–" if out.low is None else f"{out.low:g}–{out.high:g}"
    scale = "none seen" if out.noise_scale is None else f"{out.noise_scale:.3g}"
    return [case, str(specs[0].data.latent_dim), noise, ranks, steps_read,
            f"**{out.dimension}** ({out.dimension_raw:.2f})", scale, held, f"{wall:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(DEVELOPMENT + HELD_OUT))
    parser.add_argument("--floors", default=",".join(map(str, FLOORS)))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models: one thread is faster than two contended ones
    floors = sorted(float(f) for f in args.floors.split(","))
    headers = ["case", "true d", "noise s", f"threshold rule at sigma_x = {floors}",
               "log-volume between floors", "across floors (raw)", "noise scale",
               "holds for sigma_x in", "wall s"]
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for case in args.cases.split(","):
        row = run_case(case.strip(), floors, args.steps, args.n, args.seed)
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
