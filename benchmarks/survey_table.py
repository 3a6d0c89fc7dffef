"""A stored survey as a Markdown table, one row per group: the README's results tables.

Per group: the estimate of each seed, the rank `K` of each seed, the local dimension (mean
over seeds, and its seed range as a share of the mean), how many fits settled, the steps
they stopped at and their wall seconds, and the classical estimators that ``survey report``
computed on the same points (``<out>/<name>/baselines``; median over the data seeds).

With ``--by-floor`` (a survey with a ``noise_floor`` axis, after ``survey analyze``), one row
per family from ``scales.parquet`` as the report shows it (``pipelines.analysis.scales.scale_rows``:
the estimate at each floor, the readout across floors, the noise scale, where it holds), with
the classical estimators on the family's points beside it.

    python benchmarks/survey_table.py RESULTS/NAME [--estimators TwoNN MLE] [--by-floor]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pipelines.analysis.scales import scale_rows


def _range(values: pd.Series, fmt: str = "{:.0f}") -> str:
    low, high = values.min(), values.max()
    return fmt.format(low) if low == high else f"{fmt.format(low)}–{fmt.format(high)}"


def _baselines(folder: Path) -> pd.DataFrame:
    if (folder / "baselines").exists():
        return pd.read_parquet(folder / "baselines")
    return pd.DataFrame(columns=["group", "estimator", "estimate"])


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


def floor_table(folder: Path, estimators: list[str]) -> str:
    """The scales table with the classical estimators beside each family (median over the
    family's groups: every floor of a family fits the same points)."""
    scales = pd.read_parquet(folder / "scales.parquet")
    baselines = _baselines(folder)
    head, rows = scale_rows(scales)
    families = list(dict.fromkeys(scales["family"]))
    for family, cells in zip(families, rows, strict=True):
        groups = set(scales.loc[scales["family"] == family, "group"])
        for name in estimators:
            hit = baselines[baselines["group"].isin(groups) & (baselines["estimator"] == name)]
            cells.append(f"{hit['estimate'].astype(float).median():.1f}" if len(hit) else "–")
    return _markdown([*head, *estimators], rows)


def table(folder: Path, estimators: list[str]) -> str:
    fits = pd.read_parquet(folder / "fits")
    fits = fits[fits["status"] == "ok"].sort_values(["group", "seed"])
    baselines = _baselines(folder)
    head = ["group", "ours by seed", "rank K by seed", "local (seed range)", "settled",
            "settled at step", "wall per fit", *estimators]
    body = []
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
        body.append(cells)
    return _markdown(head, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="RESULTS/NAME: a survey's folder")
    parser.add_argument("--estimators", nargs="*", default=["TwoNN", "MLE"])
    parser.add_argument("--by-floor", action="store_true",
                        help="one row per family across its noise floors (scales.parquet)")
    args = parser.parse_args()
    print((floor_table if args.by_floor else table)(args.folder, args.estimators))


if __name__ == "__main__":
    main()
