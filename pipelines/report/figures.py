"""The report's figures, saved as PNG under ``<report>/figures/``: a group's spectrum, its
trajectories over steps, its data and what its model made of them (``pipelines.report.plots`` draws
them; this module picks what to draw and where it goes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.report import data_plots, plots

__all__ = ["ArtifactReader", "group_figures", "save"]

MAX_TRAJECTORY_FITS = 10  # fits drawn per trajectory figure

# A fit's kept samples and latent projection (``mflow.fit.fit_artifacts``), or None.
ArtifactReader = Callable[[str], Mapping[str, np.ndarray] | None]


def save(fig: Any, folder: Path, name: str) -> str:
    """Write ``fig`` to ``folder/figures/name``; returns its path relative to ``folder``."""
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    (folder / "figures" / name).write_bytes(plots.png(fig))
    return f"figures/{name}"


def _data_figures(config: str, title: str, artifacts: Mapping[str, np.ndarray] | None):
    """The first data set a group's fits saw (scatter for 2-D/3-D, a grid for images) and,
    where that fit kept its artifacts, what its model made of them."""
    from mflow.config import FitSpec
    from mflow.datasets import load
    from pipelines.job.readers import register_readers

    register_readers()  # a job's data file may be Parquet
    data = load(FitSpec.from_dict(json.loads(config)).data)
    figures = {}
    if data.is_image:
        figures["data"] = data_plots.image_grid_figure(data.x[:32], f"{title}: data")
    elif data.x.ndim == 2 and data.x.shape[1] in (2, 3):
        figures["data"] = data_plots.data_figure(data.x, f"{title}: data")
    if artifacts is not None:
        figures["model"] = data_plots.model_figure(data.x, artifacts, f"{title}: model (first fit)")
    return figures


def group_figures(row: Mapping[str, Any], fits: pd.DataFrame, curves: pd.DataFrame,
                  read_artifacts: ArtifactReader, folder: Path,
                  warn: Callable[[str], None]) -> dict[str, str]:
    """Draw the figures of the group of summary ``row`` into ``folder``: its spectra, the
    trajectories of its first ``MAX_TRAJECTORY_FITS`` fits, its data and its first ok fit's
    model. Returns ``{kind: path relative to folder}``; data that cannot be loaded are
    reported to ``warn`` and not drawn."""
    gid = row["group_id"]
    group = fits.set_index("fit_id").loc[list(row["fit_ids"])]
    ok = group[group["status"] == "ok"]
    figures = {}
    spectra = [list(e) for e in ok["eigenvalues"] if e is not None]
    figures["spectrum"] = save(
        plots.spectrum_figure(row, spectra, list(ok["seed"])), folder, f"{gid}-spectrum.png"
    )
    mine = curves[curves["fit_id"].isin(list(row["fit_ids"])[:MAX_TRAJECTORY_FITS])]
    if len(mine):
        top = row["estimate_max"]
        top = 8 if top is None or pd.isna(top) else min(int(top) + 4, 40)
        threshold = row["threshold"] if row["rule"] == "threshold" else None
        threshold = None if threshold is None or pd.isna(threshold) else threshold
        figures["trajectory"] = save(
            plots.trajectory_figure(mine, row["floor"], top=top, title=row["group"] or "all",
                                    threshold=threshold),
            folder, f"{gid}-trajectory.png",
        )
    first = ok.index[0] if len(ok) else None
    try:
        artifacts = read_artifacts(first) if first is not None else None
        drawn = _data_figures(group["config"].iloc[0], row["group"] or "all", artifacts)
    except Exception as exc:  # noqa: BLE001 - the report goes on without the data figures
        warn(f"{row['group']}: data not drawn ({type(exc).__name__}: {exc})")
        drawn = {}
    for name, fig in drawn.items():
        figures[name] = save(fig, folder, f"{gid}-{name}.png")
    return figures
