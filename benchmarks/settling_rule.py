"""The settling rule against the first one (max / min drift), on curves already stored.

Reads each survey folder's ``fits`` and ``curves`` tables (no training) and judges every fit
twice: with ``mflow.settle.settling`` as it stands (trend of the halves' geometric means) and
with the first rule, whose drift was ``max / min`` of each cut eigenvalue over the window at
the limit 1.5. Prints one row per fit (true dimension where known, estimate, both verdicts and
drifts) and a count per folder, so a change of rule is judged on the same fits.

    python benchmarks/settling_rule.py results/quickstart results/accuracy results/accuracy_heldout
"""

from __future__ import annotations

import argparse
import json
import math

import pandas as pd

from mflow.config import FitSpec
from mflow.fit import CurvePoint, readout_cut
from mflow.settle import settle_settings, settling

FIRST_DRIFT = 1.5  # the first rule's limit on max / min


def first_rule_drift(curve: list[CurvePoint], spec: FitSpec) -> float:
    """``max / min`` of ``lambda_k`` and ``lambda_{k+1}`` over the window (the first rule)."""
    window = settle_settings(spec)[0]
    recent = curve[-window - 1 :]
    if len(recent) <= window:
        return math.inf
    k, drift = recent[-1].estimate, 1.0
    for index in (k - 1, k):
        if 0 <= index < len(recent[-1].eigenvalues):
            values = [max(p.eigenvalues[index], 1e-300) for p in recent]
            drift = max(drift, max(values) / min(values))
    return drift


def judge(folder: str) -> pd.DataFrame:
    fits = pd.read_parquet(f"{folder}/fits")
    curves = pd.read_parquet(f"{folder}/curves")
    rows = []
    for fit in fits.itertuples():
        spec = FitSpec.from_dict(json.loads(fit.config))
        table = curves[curves.fit_id == fit.fit_id].sort_values("step")
        curve = [CurvePoint.from_dict(row) for row in table.to_dict("records")]
        now = settling(curve, spec, readout_cut(spec))
        first = first_rule_drift(curve, spec)
        # the first rule: the same verdict with its drift in place of the trend
        no_trend_limit = spec.replace(readout={"settle_drift": math.inf})
        first_settled = (
            settling(curve, no_trend_limit, readout_cut(spec)).settled and first <= FIRST_DRIFT
        )
        rows.append({
            "dataset": fit.dataset, "seed": fit.seed, "true": getattr(fit, "true_dim", None),
            "estimate": fit.id_estimate, "rank": fit.id_rank,
            "settled": now.settled, "trend": round(now.drift, 2), "margin": round(now.margin, 2),
            "first_rule": first_settled, "max/min": round(first, 2),
        })
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="survey folders (holding fits/ and curves/)")
    for folder in parser.parse_args().folders:
        table = judge(folder)
        print(f"\n{folder}\n{table.to_string(index=False)}")
        wrong = table["true"].notna() & (table["estimate"] != table["true"])
        print(f"settled: {int(table.settled.sum())} of {len(table)} "
              f"(first rule: {int(table.first_rule.sum())}); "
              f"wrong and settled: {int((wrong & table.settled).sum())} "
              f"(first rule: {int((wrong & table.first_rule).sum())})")


if __name__ == "__main__":
    main()
