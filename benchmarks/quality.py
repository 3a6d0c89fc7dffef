"""Sample quality (issue 9): how far the models' samples lie from the true manifold, and how well
their first latent coordinate orders a generating factor.

For each survey (by default ``toys_baseline`` and ``fading_square``), once its fits are stored
with their arrays (``python -m mflow.batch`` then ``survey import``), this prints as markdown one
row per group (the fits that differ only by seed), from
``pipelines.analysis.quality.quality_table``:

- ``estimates``: each fit's estimate, in seed order;
- ``off mean`` and ``off median``: per fit, the mean (median) over its samples of the distance
  to the nearest point of a dense reference sample of the true manifold; then the mean ± the
  standard deviation over seeds (sine, line and S-curve only);
- ``abs rho <factor>``: per fit, the absolute Spearman correlation between the first latent
  coordinate and the factor, over up to 1,000 training points; mean ± sd over seeds, and each.

Run: python benchmarks/quality.py [--out results] [NAME ...]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipelines.analysis.quality import quality_table


def spread(values: Sequence[float]) -> str:
    """``mean ± sd`` (sample standard deviation) of the finite ``values``, 3 significant digits.

    Example:
        >>> spread([0.1, 0.2, 0.3]), spread([2.0]), spread([])
        ('0.2 ± 0.1', '2', '')
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return ""
    if len(finite) == 1:
        return f"{finite[0]:.3g}"
    return f"{np.mean(finite):.3g} ± {np.std(finite, ddof=1):.3g}"


def _axes(group: str, dataset: str) -> dict[str, str]:
    """The group label ``"a=1 b=2"`` as columns; a survey gridded by seed alone: its dataset."""
    pairs = dict(item.split("=", 1) for item in group.split() if "=" in item)
    return pairs or {"dataset": dataset}


def group_table(table: pd.DataFrame) -> str:
    """One markdown row per group of ``quality_table``'s rows, in first-seen order."""
    factors = [c for c in table.columns if c.startswith("spearman_")]
    distance = "off_mean" in table.columns
    rows = []
    for group, fits in table.groupby("group", sort=False):
        fits = fits.sort_values("seed")
        row = _axes(str(group), str(fits["dataset"].iloc[0]))
        row["seeds"] = ", ".join(str(s) for s in fits["seed"])
        row["estimates"] = ", ".join("-" if pd.isna(e) else str(int(e)) for e in fits["estimate"])
        if distance:
            row["off mean"] = spread(fits["off_mean"])
            row["off median"] = spread(fits["off_median"])
        for column in factors:
            values = fits[column]
            each = ", ".join("-" if pd.isna(v) else f"{v:.3f}" for v in values)
            row[f"abs rho {column.removeprefix('spearman_')}"] = (
                f"{spread(values)} ({each})" if values.notna().any() else "")
        rows.append(row)
    frame = pd.DataFrame(rows).fillna("")
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in r) + " |" for r in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=["toys_baseline", "fading_square"])
    parser.add_argument("--out", default="results", help="results folder of `survey import`")
    args = parser.parse_args(argv)
    for name in args.names:
        started = time.perf_counter()
        table = quality_table(args.out, name)
        print(f"### {name}: {len(table)} fits with arrays "
              f"({time.perf_counter() - started:.1f}s)\n")
        print((group_table(table) if len(table) else "(none)") + "\n")


if __name__ == "__main__":
    main()
