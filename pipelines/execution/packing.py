"""Packs: which pending fits train together in one trial, and how many (``resources.pack``).

Fits can share a pack when ``mflow.pack.pack_key`` says so (same architecture, data shape and
schedule; seeds and noise floors may differ). ``make_packs`` groups the pending fits by that
key, in plan order, and cuts each group into packs of at most ``resources.pack`` fits; a pack of
one fit runs as a single fit (``mflow.fit.Trainer``). Baseline fits (the fixed ``N(0, I)``
prior) always run alone: ``PackTrainer`` reads each fit's spectrum from its learnable ``A``.
Packs that an earlier, killed survey run left checkpoints for are formed again as they were, so
they continue from those checkpoints.

``resources.pack: auto`` sizes the packs of each group from one fit's cost (``step_cost``: the
arithmetic of one training step, counted by torch's ``FlopCounterMode``, and the memory it
holds) and the device (``auto_pack_size``):

- CPU: enough fits that one pack step does about ``CPU_TARGET_FLOPS`` of arithmetic (tiny
  fits pack by the dozen, a 784-D conv fit runs alone), at most ``MAX_PACK``;
- GPU: as many fits as ``MEMORY_USE`` of the trial's memory holds, at most ``MAX_PACK_GPU``.

On both, a pack never needs more than ``MEMORY_USE`` of the memory a trial has.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from mflow.config import FitSpec
from mflow.datasets import Dataset
from mflow.fit import DTYPES, build_model
from mflow.pack import pack_key
from pipelines.job import Fit

__all__ = [
    "CPU_TARGET_FLOPS",
    "MAX_PACK",
    "MAX_PACK_GPU",
    "MEMORY_USE",
    "StepCost",
    "auto_pack_size",
    "make_packs",
    "pack_id",
    "packable",
    "step_cost",
]

#: Arithmetic per pack step that keeps a CPU core busy with large kernels: about 64 of the
#: default 2-D toy fits (8 couplings, batch 256: 15 MFLOP per fit-step), where the measured
#: gain of packing levels off (benchmarks/run.py); a 784-D conv fit (10 GFLOP) runs alone.
CPU_TARGET_FLOPS = 1e9
MAX_PACK = 128  # most fits per pack on a CPU
MAX_PACK_GPU = 1024  # most fits per pack on a GPU
MEMORY_USE = 0.8  # share of a trial's memory that a pack may fill


@dataclass(frozen=True)
class StepCost:
    """What one training step of one fit costs."""

    flops: float  # floating-point operations, forward and backward
    memory: int  # bytes held: saved activations, parameters with gradients and Adam moments,
    # and the fit's data (each packed fit keeps its own copy on the device)


def step_cost(spec: FitSpec, data: Dataset) -> StepCost:
    """Count one training step of one fit of ``spec`` on ``data`` (on the CPU; the counts do not
    depend on the device)."""
    dtype = DTYPES[spec.train.dtype]
    x = torch.as_tensor(data.x[: spec.train.batch_size], dtype=dtype)
    model = build_model(spec, x, data.sample_shape)
    eps = torch.zeros(x.shape[0], model.prior.dim, dtype=dtype)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def keep(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with FlopCounterMode(display=False) as counter:
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            loss = model(x, eps, spec.prior.entropy_weight)
        loss.backward()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    data_bytes = data.x.size * torch.finfo(dtype).bits // 8
    return StepCost(
        flops=float(counter.get_total_flops()),
        memory=sum(saved.values()) + 4 * weights + data_bytes,
    )


def auto_pack_size(cost: StepCost, *, gpu: bool, memory: float) -> int:
    """Fits per pack for fits of ``cost`` in a trial with ``memory`` bytes, on a GPU or not.

    Example:
        >>> auto_pack_size(StepCost(flops=1.5e7, memory=1.4e6), gpu=False, memory=4e9)
        66
        >>> auto_pack_size(StepCost(flops=4e10, memory=3e8), gpu=True, memory=20e9)
        53
    """
    by_memory = int(MEMORY_USE * memory // max(cost.memory, 1))
    if gpu:
        size = min(by_memory, MAX_PACK_GPU)
    else:
        size = min(int(CPU_TARGET_FLOPS // max(cost.flops, 1.0)), by_memory, MAX_PACK)
    return max(1, size)


def packable(spec: FitSpec) -> bool:
    """Whether ``mflow.pack.PackTrainer`` can train fits of ``spec`` (the manifold prior)."""
    return spec.prior.kind == "manifold"


def pack_id(fit_ids: Sequence[str]) -> str:
    """A filename-safe name for the trial of a pack: ``pack-<hash of its fit ids>``.

    Example:
        >>> pack_id(["sine-a", "sine-b"]) == pack_id(["sine-b", "sine-a"])
        True
    """
    digest = hashlib.sha256(",".join(sorted(fit_ids)).encode()).hexdigest()[:10]
    return f"pack-{len(fit_ids)}-{digest}"


def make_packs(
    fits: Sequence[Fit],
    sizes: Mapping[str, int] | int,
    resume: Mapping[str, str] | None = None,
) -> list[list[Fit]]:
    """Cut ``fits`` into packs of fits that can train together.

    Args:
        fits: the pending fits, in plan order.
        sizes: the most fits per pack, for all groups or per ``pack_key`` (missing keys: 1).
        resume: ``{fit_id: checkpoint}`` left by earlier runs. Fits sharing one checkpoint (an
            earlier run's pack, or a fit's own) form that pack again when the pack still fits
            in ``sizes``: a pack planned anew could not continue from it.

    Returns:
        The packs, as few per group as ``sizes`` allows and of near-equal sizes; within a
        pack, fits are ordered by fit id (so a pack formed again from the
        same fits has the order its checkpoint was written in).
    """

    def limit(fit: Fit) -> int:
        if not packable(fit.spec):
            return 1
        return sizes if isinstance(sizes, int) else sizes.get(pack_key(fit.spec), 1)

    resume = resume or {}
    by_checkpoint: dict[str, list[Fit]] = {}
    for fit in fits:
        if fit.fit_id in resume:
            by_checkpoint.setdefault(resume[fit.fit_id], []).append(fit)
    packs: list[list[Fit]] = []
    taken: set[str] = set()
    for group in by_checkpoint.values():
        keys = {pack_key(fit.spec) for fit in group}
        if len(keys) == 1 and len(group) <= limit(group[0]):
            packs.append(sorted(group, key=lambda f: f.fit_id))
            taken.update(fit.fit_id for fit in group)
    groups: dict[str, list[Fit]] = {}
    for fit in fits:
        if fit.fit_id not in taken:
            groups.setdefault(pack_key(fit.spec), []).append(fit)
    for group in groups.values():
        # As few packs as the size allows, of near-equal sizes: 6 fits at most 4 to a pack
        # are two packs of 3 (both end together), not 4 and 2.
        count = -(-len(group) // max(1, limit(group[0])))
        bounds = [round(i * len(group) / count) for i in range(count + 1)]
        for start, end in zip(bounds, bounds[1:], strict=False):
            packs.append(sorted(group[start:end], key=lambda f: f.fit_id))
    return packs
