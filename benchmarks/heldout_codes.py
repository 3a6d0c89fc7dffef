"""Where the held-out rows' codes spread, against the prior's rank, on cached fits.

For each fit that ``benchmarks/flow_readouts.py`` (``-s{steps}``) or ``settled_holds.py
--fresh`` (``-h{steps}``) cached, the codes ``g(x)`` of the training rows and of the 500
held-out rows are turned into the eigenbasis of ``A A^T`` (largest first), and counted: the
rank ``K`` (eigenvalues of ``A A^T`` above the cut ``20 * floor``), ``K_train`` and
``K_held`` (directions whose training / held-out code variance is above the same cut). Where
``K_held > K``, the held-out rows fill a direction the prior dropped and the training rows do
not: the flow squeezed that direction for the rows it trained on only (it memorised them).
``held/train`` is the largest ratio of held-out to training variance in the dropped
directions. No training: the fits must be cached.

Run: python benchmarks/heldout_codes.py [--fits s4000 h12000] [--cases M9_Affine ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from flow_readouts import cached_fit, manifolds, prior_codes  # benchmarks/ is the script's folder


def counts(name: str, d: int, x: np.ndarray, path: Path, steps: int) -> dict:
    """The rank, the training and held-out counts and the stored headline of one fit."""
    from mflow.readout import readout_cut

    trainer, train, held = cached_fit(d, x, path, steps)
    eigenvalues, (train_codes, held_codes) = prior_codes(trainer, train, held)
    var = {"train": train_codes.var(0), "held": held_codes.var(0)}
    cut = readout_cut(trainer.spec)
    rank = int((eigenvalues > cut).sum())
    dropped = slice(rank, None)
    ratio = var["held"][dropped] / np.maximum(var["train"][dropped], 1e-30)
    return {"case": name, "d": d, "D": x.shape[1], "head": trainer.result().id_estimate,
            "K": rank, "K_train": int((var["train"] > cut).sum()),
            "K_held": int((var["held"] > cut).sum()),
            "held/train": float(ratio.max()) if ratio.size else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", nargs="+", default=["s4000"],
                        help="cached fits by suffix: s<steps> (flow_readouts), h<steps> (fresh)")
    parser.add_argument("--cases", nargs="*", default=None)
    parser.add_argument("--cache", default="benchmarks/.cache/flow_readouts")
    args = parser.parse_args()
    cases = manifolds(0)
    for suffix in args.fits:
        rows = []
        for name, (d, x) in sorted(cases.items()):
            path = Path(args.cache) / f"{name}-r0-{suffix}.pt"
            if (args.cases and name not in args.cases) or not path.exists():
                continue
            rows.append(counts(name, d, x, path, int(suffix[1:])))
        print(f"\nfits {suffix} ({len(rows)} cached)")
        print(f"{'case':<20}{'d':>4}{'D':>4}{'head':>6}{'K':>4}{'K_train':>9}{'K_held':>8}"
              f"{'held/train':>12}")
        for r in rows:
            head = "-" if r["head"] is None else r["head"]
            print(f"{r['case']:<20}{r['d']:>4}{r['D']:>4}{head:>6}{r['K']:>4}{r['K_train']:>9}"
                  f"{r['K_held']:>8}{r['held/train']:>12.1f}")
        for key in ("K", "K_held"):
            right = sum(r[key] == r["d"] for r in rows)
            print(f"{key}: {right}/{len(rows)} exact, mean error "
                  f"{np.mean([abs(r[key] - r['d']) for r in rows]):.2f}")
        above = [r["case"] for r in rows if r["K_held"] > r["K"]]
        print(f"K_held > K on {len(above)}: {', '.join(above) or 'none'}")


if __name__ == "__main__":
    main()
