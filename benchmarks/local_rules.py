"""Which local rule should read the flow's codes (issue 16)? Measured on trained fits.

For each fit of a plan (``survey export JOB -o PLAN.json``) whose pack state ``python -m
mflow.batch PLAN.json -o OUT --checkpoints DIR`` saved in ``DIR``, this loads the weights the fit
stopped with, takes the codes ``g(x) E_K`` of the same (up to) 1,000 points the fit's result
uses (``K``: the rank of ``A A^T``, ``mflow.fit.local_codes``), and prints, per case, every
rule of ``mflow.local.LOCAL_RULES`` on the codes and on the raw points (after the rank, the
directions the codes fill locally, ``mflow.local.filled_directions``), then per rule how many
cases ``min(K, round(local))`` gets exactly right and its mean absolute error. Use it on the
development set only; the held-out set is for the final table.

Run: python benchmarks/local_rules.py PLAN.json --checkpoints DIR [--neighbours 20]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from mflow.batch import _checkpoint
from mflow.config import FitSpec
from mflow.fit import local_codes
from mflow.local import LOCAL_NEIGHBOURS, LOCAL_RULES, filled_directions, local_dimension
from mflow.pack import PackTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("plan")
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--neighbours", type=int, default=LOCAL_NEIGHBOURS,
                        help="k of the MLE and local PCA")
    args = parser.parse_args()
    torch.set_num_threads(1)
    plan = json.loads(open(args.plan).read())
    rows = []
    for fit in plan["fits"]:
        path = _checkpoint(args.checkpoints, [fit["fit_id"]])
        if not path.exists():
            continue
        spec = FitSpec.from_dict(fit["spec"])
        trainer = PackTrainer([spec])
        trainer.load_state_dict(torch.load(path, weights_only=True))
        rank = trainer.results()[0].id_rank
        codes, index = local_codes(trainer.member(0), trainer.x[0], rank, spec.train.seed)
        raw = trainer.x[0][torch.as_tensor(index)].double().numpy()
        label = (fit.get("axes") or {}).get("case", fit["fit_id"])
        k = args.neighbours
        on_codes = {r: local_dimension(codes, r, k).value for r in LOCAL_RULES}
        on_raw = {r: local_dimension(raw, r, k).value for r in LOCAL_RULES}
        rows.append((label, spec.data.latent_dim, rank, on_codes, on_raw))
        cells = " | ".join(f"{on_codes[r]:.2f} / {on_raw[r]:.2f}" for r in LOCAL_RULES)
        fills = filled_directions(codes)
        print(f"| {label} | {spec.data.latent_dim} | {rank} | {fills} | {cells} |", flush=True)
    print("\nrule: right / MAE of min(K, round(codes)); of round(raw)")
    for r in LOCAL_RULES:
        ours = [min(k, max(1, round(c[r]))) - d for _, d, k, c, _ in rows]
        raw = [round(w[r]) - d for _, d, _, _, w in rows]
        print(f"{r}: {sum(e == 0 for e in ours)} / {len(rows)}, {np.mean(np.abs(ours)):.2f}; "
              f"{sum(e == 0 for e in raw)}, {np.mean(np.abs(raw)):.2f}")
    ranks = [k - d for _, d, k, _, _ in rows]
    print(f"rank: {sum(e == 0 for e in ranks)}, {np.mean(np.abs(ranks)):.2f}")


if __name__ == "__main__":
    main()
