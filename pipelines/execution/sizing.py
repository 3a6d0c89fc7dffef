"""Pack sizing for ``resources.pack: auto``: the memory a trial may fill, asked of the
cluster, and one fit's cost per group of packable fits (``packing.auto_pack_size``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipelines.execution import packing
from pipelines.execution.cluster import gpu_memory, slots_now
from pipelines.job import Fit, Resources

__all__ = ["plan_packs", "trial_memory"]


def trial_memory(resources: Resources) -> float:
    """Bytes one trial may fill: its share of a GPU's memory, or else its share of the
    cluster's memory when every trial slot it has now is busy."""
    import ray

    if resources.gpu > 0:
        return min(1.0, resources.gpu) * gpu_memory(resources)
    return ray.cluster_resources().get("memory", 2**31) / slots_now(resources)


def _auto_sizes(fits: Sequence[Fit], resources: Resources) -> dict[str, int]:
    """``resources.pack: auto``: fits per pack for each group of packable fits, from one fit's
    cost (its data loaded here) and the trial's device (``packing.auto_pack_size``)."""
    from mflow.datasets import load
    from mflow.pack import pack_key
    from pipelines.job.readers import register_readers

    register_readers()
    memory = trial_memory(resources)
    sizes: dict[str, int] = {}
    for fit in fits:
        key = pack_key(fit.spec)
        if key in sizes:
            continue
        try:
            cost = packing.step_cost(fit.spec, load(fit.spec.data))
        except Exception:  # noqa: BLE001 - the fit's own trial reports why it cannot run
            sizes[key] = 1
            continue
        sizes[key] = packing.auto_pack_size(cost, gpu=resources.gpu > 0, memory=memory)
    return sizes


def plan_packs(
    fits: Sequence[Fit], resources: Resources, resume: Mapping[str, str] | None = None
) -> list[list[Fit]]:
    """The trials ``run_trials`` runs for ``fits``: packs of at most ``resources.pack`` fits
    (sized per group for ``auto``), earlier runs' packs formed again (``packing.make_packs``)."""
    if resources.pack == "auto":
        sizes: dict[str, int] | int = _auto_sizes(fits, resources)
    else:
        sizes = int(resources.pack)
    return packing.make_packs(fits, sizes, resume)
