"""A stored survey as a Markdown table, one row per group: the README's results tables.

Per group: the estimate of each seed, the rank `K` of each seed, the local dimension (mean
over seeds, and its seed range as a share of the mean), how many fits settled, the steps
they stopped at and their wall seconds, and the classical estimators that ``survey report``
computed on the same points (``<out>/<name>/baselines``; median over the data seeds).

    python benchmarks/survey_table.py RESULTS/NAME [--estimators TwoNN MLE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def _range(values: pd.Series, fmt: str = "{:.0f}") -> str:
    low, high = values.min(), values.max()
    return fmt.format(low) if low == high else f"{fmt.format(low)}–{fmt.format(high)}"


def table(folder: Path, estimators: list[str]) -> str:
    fits = pd.read_parquet(folder / "fits")
    fits = fits[fits["status"] == "ok"].sort_values(["group", "seed"])
    baselines = (pd.read_parquet(folder / "baselines") if (folder / "baselines").exists()
                 else pd.DataFrame(columns=["group", "estimator", "estimate"]))
    head = ["group", "ours by seed", "rank K by seed", "local (seed range)", "settled",
            "settled at step", "wall per fit", *estimators]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group, rows in fits.groupby("group", sort=False):
        local = rows["local_dim"].astype(float)
        spread = (local.max() - local.min()) / local.mean() if len(local) else float("nan")
        cells = [
            group,
            " ".join(str(int(v)) for v in rows["id_estimate"]),
            " ".join(str(int(v)) for v in rows["id_rank"]),
            f"{local.mean():.2f} ({100 * spread:.1f} %)",
            f"{int(rows['settled'].sum())}/{len(rows)}",
            _range(rows["steps"].astype(float), "{:,.0f}"),
            _range(rows["wall_s"].astype(float), "{:.0f} s"),
        ]
        for name in estimators:
            hit = baselines[(baselines["group"] == group) & (baselines["estimator"] == name)]
            cells.append(f"{float(hit['estimate'].iloc[0]):.1f}" if len(hit) else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="RESULTS/NAME: a survey's folder")
    parser.add_argument("--estimators", nargs="*", default=["TwoNN", "MLE"])
    args = parser.parse_args()
    print(table(args.folder, args.estimators))


if __name__ == "__main__":
    main()
