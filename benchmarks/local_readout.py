"""Would a local readout of the flow's latent codes beat the rank of ``A A^T``?

The rank readout cannot go below ``d + 1`` on a closed manifold (a flow cannot flatten a
sphere), while a count of the directions a *neighbourhood* of codes spreads in could. This
trains the default fit on each case of a job file (the accuracy development set by default; the
held-out set is not for choosing methods), projects the codes ``g(x)`` onto the ``r`` used
eigenvectors of ``A A^T`` (``r``: the default readout), and counts local directions there with
scikit-dimension's local PCA (Fukunaga-Olsen: eigenvalues above 5% of the largest, averaged
over every point's ``k`` nearest neighbours, rounded). The same count on the raw points says
whether the flow is what helps.

Run: python benchmarks/local_readout.py [--job jobs/accuracy.yaml] [--neighbours 25] [--procs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp

import numpy as np
import torch

from mflow.config import FitSpec
from mflow.fit import Trainer
from pipelines.job import load_job, plan


def local_pca(points: np.ndarray, neighbours: int) -> float:
    """Mean over points of the Fukunaga-Olsen count of their ``neighbours`` nearest."""
    import skdim

    if points.shape[1] == 1:
        return 1.0
    estimator = skdim.id.lPCA(ver="FO", alphaFO=0.05, verbose=False)
    estimator.fit_pw(points, n_neighbors=neighbours)
    return float(np.mean(estimator.dimension_pw_))


def _run(job: tuple[str, FitSpec, int]) -> tuple[str, int, int, float, float]:
    label, spec, neighbours = job
    torch.set_num_threads(1)
    trainer = Trainer(spec)
    result = trainer.run()
    rank = max(result.id_estimate or 0, 1)
    with torch.no_grad():
        codes = trainer.model.project(trainer.x, rank).double().numpy()
    raw = trainer.x.double().reshape(len(trainer.x), -1).numpy()
    return (
        label,
        spec.data.latent_dim,
        result.id_estimate,
        local_pca(codes, neighbours),
        local_pca(raw, neighbours),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--job", default="jobs/accuracy.yaml")
    parser.add_argument("--neighbours", type=int, default=25)
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args()
    jobs = [
        (fit.axes.get("case", fit.fit_id), fit.spec, args.neighbours)
        for fit in plan(load_job(args.job))
    ]
    with mp.get_context("spawn").Pool(args.procs) as pool:
        rows = pool.map(_run, jobs)
    print(f"local PCA (Fukunaga-Olsen, {args.neighbours} neighbours), rounded mean over points\n")
    print("| case | true d | rank of A Aᵀ | local, codes | local, raw points |")
    print("|---|---|---|---|---|")
    right = [0, 0, 0]
    for label, d, rank, codes, raw in rows:
        for i, value in enumerate((rank, codes, raw)):
            right[i] += round(value) == d
        print(f"| {label} | {d} | {rank} | {codes:.2f} | {raw:.2f} |")
    print(f"| exactly right | | {right[0]} | {right[1]} | {right[2]} |")


if __name__ == "__main__":
    main()
