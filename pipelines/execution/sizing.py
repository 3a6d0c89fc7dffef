"""Pack sizing for ``resources.pack: auto``: the memory a trial may fill, asked of the
cluster, and one fit's cost per group of packable fits (``packing.auto_pack_size``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from pipelines.execution import packing
from pipelines.execution.cluster import gpu_memory, slots_now
from pipelines.job import Fit, Resources

__all__ = ["fill_slots", "plan_packs", "trial_memory"]


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
    counts: Counter[str] = Counter()
    for fit in fits:
        key = pack_key(fit.spec)
        counts[key] += 1
        if key in sizes:
            continue
        try:
            cost = packing.step_cost(fit.spec, load(fit.spec.data))
        except Exception:  # noqa: BLE001 - the fit's own trial reports why it cannot run
            sizes[key] = 1
            continue
        sizes[key] = packing.auto_pack_size(cost, gpu=resources.gpu > 0, memory=memory)
    return fill_slots(sizes, counts, slots_now(resources))


def fill_slots(sizes: dict[str, int], counts: Mapping[str, int], slots: int) -> dict[str, int]:
    """Pack sizes made smaller until the packs are at least as many as the trial ``slots`` the
    cluster holds now (or every pack is one fit): one big pack on one core of two leaves the
    other idle, two half packs use both. The group whose packs are largest is split first.

    Example:
        >>> fill_slots({"sine": 16}, {"sine": 16}, 2)
        {'sine': 8}
        >>> fill_slots({"a": 3, "b": 3}, {"a": 3, "b": 3}, 2)
        {'a': 3, 'b': 3}
        >>> fill_slots({"a": 66}, {"a": 3}, 4)
        {'a': 1}
    """
    sizes = {key: min(size, counts[key]) for key, size in sizes.items()}

    def packs(key: str) -> int:
        return -(-counts[key] // sizes[key])

    while sum(packs(key) for key in sizes) < slots:
        splittable = [key for key in sizes if sizes[key] > 1]
        if not splittable:
            break
        key = max(splittable, key=lambda k: sizes[k])
        sizes[key] = -(-counts[key] // (packs(key) + 1))
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
