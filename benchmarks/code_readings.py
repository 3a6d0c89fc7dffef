"""The local readout of a fit's codes, read six ways, on cached fits (no training).

Until readout ``rank-local/4`` the headline read the codes ``g(x)`` of the training rows in the
``K`` directions of ``A A^T`` above the cut with the calibrated MLE (``mflow.local``,
calibrated on uniform cubes); since then it tests them against the prior first (``prior``
below, ``mflow.local.code_dimension``). Two choices in the calibrated reading are open: whether
the codes are first whitened by the prior (divided by ``sqrt(lambda_i)``, which undoes how the
spread KL happens to share variance among the kept directions), and what the MLE is calibrated
against (uniform cubes, or standard Gaussians, which is what the prior says the codes are).
Printed per case and in total (exact, mean absolute error) for the headline ``min(K,
round(local))`` of each:

- ``cube``: as the headline did before ``rank-local/4`` (here on all 2,000 training rows);
- ``cube_w``: whitened, cube-calibrated; ``gauss``: Gaussian-calibrated; ``gauss_w``: both;
- ``cube_wf``: whitened and cube-calibrated, the fill test on the unwhitened codes;
- ``prior``: a test of the codes against the model's own prior. Where the flow has flattened
  the data into the ``K`` kept directions, the whitened codes spread like ``N(0, I_K)`` draws,
  and their raw MLE reads what ``n`` standard Gaussian draws in ``K`` dimensions read; where
  they lie on a curved lower-dimensional set inside those directions they read less. The
  reading is ``K`` where the codes read at least ``mflow.local.PRIOR_MATCH`` of the Gaussian's,
  else ``cube``'s. (Fixed on replicates 0 and 1, 2026-12-07, before replicates 2-4 were trained
  or read.) The script now calls the headline's own code (``mflow.local.code_dimension``),
  whose Gaussian reference is drawn from another seed than the script's first version.

A reading that rounds to ``K`` is held to the directions the codes fill (``filled_directions``)
as the headline's is; for ``gauss_w`` and ``cube_wf`` the unwhitened codes are tested (a
sphere's thin normal shows there), ``cube_w`` tests the whitened ones, as ``local_dimension``
does with whatever it is given. Whitening makes the MLE's reading a property of the model's
density (for a linear ``L`` of determinant one, ``(L g, L Sigma L^T)`` whitens to a rotation of
the same codes); the fill test on the unwhitened codes is not.

``--gap-below-cut R`` reads every way at another rank: the cut's ``K``, extended through the
largest drop beneath the cut (``rank_through_gap``) where that drop is a factor of at least
``R``; the paraboloids keep their minor directions a little under the cut, a factor 2 or more
above the noise below them.

Totals are printed for all cases and for the even and odd halves of the sorted case names
(choose on one, score on the other).

Run (after flow_readouts.py): python benchmarks/code_readings.py [--fits s4000]
         [--replicates 0 1] [--gap-below-cut 2]
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
from flow_readouts import cached_fit, manifolds, prior_codes  # benchmarks/ is the script's folder

WAYS = ("cube", "cube_w", "gauss", "gauss_w", "cube_wf", "prior")


def held_calibrated(points: np.ndarray, fill: np.ndarray, reference) -> float:
    """The MLE of ``points`` calibrated by ``reference(m)`` (its reading on ``m``
    dimensions); a reading that rounds to ``D`` is held to the directions the points ``fill``
    fill, as ``mflow.local.local_dimension`` holds its own (``fill``: the unwhitened codes,
    where whitening would hide a sphere's thin normal)."""
    from mflow.local import LOCAL_NEIGHBOURS, calibrate, filled_directions, mle, neighbour_distances

    value, _ = mle(neighbour_distances(points, LOCAL_NEIGHBOURS))
    dim = points.shape[1]
    value = calibrate(value, reference, dim)
    if dim > 1 and value >= dim - 0.5:
        value = min(value, float(filled_directions(fill)))
    return value


def rank_through_gap(eigenvalues: np.ndarray, cut: float, ratio: float | None) -> int:
    """The number of ``eigenvalues`` (descending) above ``cut``, extended through the largest
    drop between consecutive eigenvalues beneath it where that drop is a factor of at least
    ``ratio`` (None: the cut's count).

    Example:
        >>> ev = np.array([90.0, 16.0, 7.0, 2.4, 2.2])
        >>> rank_through_gap(ev, 20.0, None), rank_through_gap(ev, 20.0, 2.0)
        (1, 3)
    """
    rank = int((eigenvalues > cut).sum())
    below = eigenvalues[rank:]
    if ratio is None or below.size < 2:
        return rank
    drops = below[:-1] / np.maximum(below[1:], np.finfo(float).tiny)
    at = int(np.argmax(drops))
    return rank + at + 1 if drops[at] >= ratio else rank


def readings(d: int, x: np.ndarray, path: Path, steps: int, state: int,
             gap: float | None = None) -> dict | None:
    """The rank and the six local readings of one cached fit; None where the rank is 0.
    ``gap``: the rank through a drop beneath the cut (``rank_through_gap``)."""
    from mflow.local import (
        LOCAL_NEIGHBOURS,
        LOCAL_RULE,
        code_dimension,
        cube_reading,
        gaussian_reading,
        local_dimension,
    )
    from mflow.readout import readout_cut

    trainer, train, _ = cached_fit(d, x, path, steps, state)
    eigenvalues, (codes,) = prior_codes(trainer, train)
    rank = rank_through_gap(eigenvalues, readout_cut(trainer.spec), gap)
    if rank < 1:
        return None
    kept = codes[:, :rank]
    white = kept / np.sqrt(eigenvalues[:rank])
    gauss = functools.partial(gaussian_reading, "mle", LOCAL_NEIGHBOURS, len(kept))
    cube = functools.partial(cube_reading, "mle", LOCAL_NEIGHBOURS, len(kept))
    return {"K": rank, "cube": local_dimension(kept, LOCAL_RULE).value,
            "cube_w": local_dimension(white, LOCAL_RULE).value,
            "gauss": held_calibrated(kept, kept, gauss),
            "gauss_w": held_calibrated(white, kept, gauss),
            "cube_wf": held_calibrated(white, kept, cube),
            "prior": code_dimension(kept, eigenvalues[:rank], LOCAL_RULE).value}


def main() -> None:
    from mflow.local import headline_dimension

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", default="s4000", help="cached fits by suffix: s<steps>")
    parser.add_argument("--cache", default="benchmarks/.cache/flow_readouts")
    parser.add_argument("--replicates", type=int, nargs="+", default=[0])
    parser.add_argument("--gap-below-cut", type=float, help="rank_through_gap's ratio")
    args = parser.parse_args()
    rows = []
    print(f"{'case':<24}{'d':>4}{'K':>4}" + "".join(f"{w:>9}" for w in WAYS))
    for state in args.replicates:
        for i, (name, (d, x)) in enumerate(sorted(manifolds(state).items())):
            path = Path(args.cache) / f"{name}-r{state}-{args.fits}.pt"
            row = (readings(d, x, path, int(args.fits[1:]), state, args.gap_below_cut)
                   if path.exists() else None)
            if row is None:
                continue
            rows.append({"case": f"{name} r{state}", "half": i % 2, "d": d, **row})
            print(f"{rows[-1]['case']:<24}{d:>4}{row['K']:>4}"
                  + "".join(f"{row[w]:>9.2f}" for w in WAYS), flush=True)
    for way in WAYS:
        for label, part in (("all", rows), ("even", [r for r in rows if r["half"] == 0]),
                            ("odd", [r for r in rows if r["half"] == 1])):
            heads = [headline_dimension(r["K"], r[way]) for r in part]
            wrong = [f"{r['case']} {h}" for h, r in zip(heads, part, strict=True)
                     if h != r["d"]]
            print(f"{way} {label}: {len(part) - len(wrong)}/{len(part)} exact, mean error "
                  f"{np.mean([abs(h - r['d']) for h, r in zip(heads, part, strict=True)]):.2f}"
                  + (f"; wrong: {', '.join(wrong)}" if label == "all" else ""))


if __name__ == "__main__":
    main()
