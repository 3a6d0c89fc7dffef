"""The local readout of a fit's codes, read four ways, on cached fits (no training).

The headline reads the codes ``g(x)`` of the training rows in the ``K`` directions of
``A A^T`` above the cut with the calibrated MLE (``mflow.local``, calibrated on uniform cubes).
Two choices in that are open: whether the codes are first whitened by the prior (divided by
``sqrt(lambda_i)``, which undoes how the spread KL happens to share variance among the kept
directions), and what the MLE is calibrated against (uniform cubes, or standard Gaussians,
which is what the prior says the codes are). Printed per case and in total (exact, mean
absolute error) for the headline ``min(K, round(local))`` of each:

- ``cube``: as the headline does (here on all 2,000 training rows);
- ``cube_w``: whitened, cube-calibrated; ``gauss``: Gaussian-calibrated; ``gauss_w``: both.

A reading that rounds to ``K`` is held to the directions the codes fill (``filled_directions``)
as the headline's is; for ``gauss_w`` the unwhitened codes are tested (``cube_w`` tests the
whitened ones, as ``local_dimension`` does with whatever it is given).

Run (after flow_readouts.py): python benchmarks/code_readings.py [--fits s4000]
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
from flow_readouts import cached_fit, manifolds, prior_codes  # benchmarks/ is the script's folder

WAYS = ("cube", "cube_w", "gauss", "gauss_w")


@functools.cache
def gaussian_reading(n: int, dim: int) -> float:
    """The MLE's reading on ``n`` standard Gaussian points in ``dim`` dimensions."""
    from mflow.local import LOCAL_NEIGHBOURS, mle, neighbour_distances

    points = np.random.default_rng(0).standard_normal((n, dim))
    return mle(neighbour_distances(points, LOCAL_NEIGHBOURS))[0]


def gaussian_calibrated(points: np.ndarray, unwhitened: np.ndarray) -> float:
    """The MLE calibrated against Gaussians; a reading that rounds to ``D`` is held to the
    directions the ``unwhitened`` codes fill (whitening would hide a sphere's thin normal),
    as ``mflow.local.local_dimension`` holds its cube-calibrated one."""
    from mflow.local import (
        LOCAL_NEIGHBOURS,
        calibrate,
        filled_directions,
        mle,
        neighbour_distances,
    )

    value, _ = mle(neighbour_distances(points, LOCAL_NEIGHBOURS))
    dim = points.shape[1]
    value = calibrate(value, functools.partial(gaussian_reading, points.shape[0]), dim)
    if dim > 1 and value >= dim - 0.5:
        value = min(value, float(filled_directions(unwhitened)))
    return value


def readings(d: int, x: np.ndarray, path: Path, steps: int) -> dict | None:
    """The rank and the four local readings of one cached fit; None where the rank is 0."""
    from mflow.local import LOCAL_RULE, local_dimension
    from mflow.readout import readout_cut

    trainer, train, _ = cached_fit(d, x, path, steps)
    eigenvalues, (codes,) = prior_codes(trainer, train)
    rank = int((eigenvalues > readout_cut(trainer.spec)).sum())
    if rank < 1:
        return None
    kept = codes[:, :rank]
    white = kept / np.sqrt(eigenvalues[:rank])
    return {"K": rank, "cube": local_dimension(kept, LOCAL_RULE).value,
            "cube_w": local_dimension(white, LOCAL_RULE).value,
            "gauss": gaussian_calibrated(kept, kept), "gauss_w": gaussian_calibrated(white, kept)}


def main() -> None:
    from mflow.local import headline_dimension

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", default="s4000", help="cached fits by suffix: s<steps>")
    parser.add_argument("--cache", default="benchmarks/.cache/flow_readouts")
    args = parser.parse_args()
    rows = []
    print(f"{'case':<20}{'d':>4}{'K':>4}" + "".join(f"{w:>9}" for w in WAYS))
    for name, (d, x) in sorted(manifolds(0).items()):
        path = Path(args.cache) / f"{name}-r0-{args.fits}.pt"
        row = readings(d, x, path, int(args.fits[1:])) if path.exists() else None
        if row is None:
            continue
        rows.append({"case": name, "d": d, **row})
        print(f"{name:<20}{d:>4}{row['K']:>4}" + "".join(f"{row[w]:>9.2f}" for w in WAYS))
    for way in WAYS:
        heads = [headline_dimension(r["K"], r[way]) for r in rows]
        wrong = [f"{r['case']} {h}" for h, r in zip(heads, rows, strict=True) if h != r["d"]]
        print(f"{way}: {len(rows) - len(wrong)}/{len(rows)} exact, mean error "
              f"{np.mean([abs(h - r['d']) for h, r in zip(heads, rows, strict=True)]):.2f}; "
              f"wrong: {', '.join(wrong)}")


if __name__ == "__main__":
    main()
