"""Packed fits: several same-shaped fits trained together as one vectorised ensemble.

A survey's fits are mostly small, and a small model leaves a device (or a CPU core) idle
between tiny kernels. ``PackTrainer`` stacks the parameters of K fits (``torch.func``'s
``stack_module_state``) and evaluates all K losses with one ``vmap``-ed call, so each kernel
does K fits' work. The fits stay separate: each has its own data, its own random generator
(drawn in the same order as ``Trainer`` draws, so a packed fit follows its unpacked run up to
floating-point rounding), its own gradient clipping, divergence, curve and result. Adam is
element-wise, so one Adam over the stacked parameters is K independent Adams.

Fits can share a pack when everything but ``data.seed``, ``data.classes``, ``data.latent_dim``,
``train.seed`` and the data-noise schedule (``train.noise_start``, ``noise_floor``) is equal,
and their data have equal shapes: see ``pack_key``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from mflow.config import FitSpec
from mflow.datasets import Dataset, check_enough_rows, load
from mflow.fit import (
    DTYPES,
    CurvePoint,
    FitResult,
    build_model,
    check_train,
    early_stop_due,
    fit_artifacts,
    make_optimizer,
    make_result,
    noise_std,
    read_dimension,
    resolve_device,
)
from mflow.model import ManifoldFlow

__all__ = ["PACKABLE_FIELDS", "PackTrainer", "fit_pack", "pack_key"]

#: Fields that may differ between the fits of one pack.
PACKABLE_FIELDS = {
    # Equal-sized subsets of one dataset (another seed, class or latent dimension) have equal
    # shapes; PackTrainer checks the shapes.
    "data": ("seed", "classes", "latent_dim"),
    "train": ("seed", "noise_start", "noise_floor"),
}


def pack_key(spec: FitSpec) -> str:
    """Fits with equal keys can share a pack (same architecture, data shape and schedule)."""
    blank = {
        section: {name: None for name in names} for section, names in PACKABLE_FIELDS.items()
    }
    return spec.replace(**blank).to_json()


class PackTrainer:
    """K fits in progress, trained as one vectorised ensemble.

    Args:
        specs: the fits; all must have the same ``pack_key``.
        datas: their points (equal shapes); loaded from each spec when not given.

    Example:
        >>> from mflow.config import DataSpec
        >>> base = FitSpec(data=DataSpec("sine", n=300)).replace(train={"steps": 10})
        >>> specs = [base.replace(train={"seed": s}, data={"seed": s}) for s in range(3)]
        >>> [r.status for r in PackTrainer(specs).run()]
        ['ok', 'ok', 'ok']
    """

    def __init__(self, specs: Sequence[FitSpec], datas: Sequence[Dataset] | None = None) -> None:
        if not specs:
            raise ValueError("PackTrainer: no fits to pack")
        keys = {pack_key(spec) for spec in specs}
        if len(keys) > 1:
            raise ValueError(
                "PackTrainer: fits differ in more than "
                f"{', '.join(f'{s}.{f}' for s, fs in PACKABLE_FIELDS.items() for f in fs)}"
            )
        self.specs = list(specs)
        train = self.specs[0].train
        check_train(train)
        self.datas = list(datas) if datas is not None else [load(s.data) for s in self.specs]
        shapes = {(d.n, d.sample_shape) for d in self.datas}
        if len(shapes) > 1:
            raise ValueError(f"PackTrainer: packed data must have equal shapes, got {shapes}")
        for data in self.datas:
            check_enough_rows(data, train.batch_size)
        self.device = resolve_device(train.device)
        dtype = DTYPES[train.dtype]
        self.x = torch.stack(
            [torch.as_tensor(d.x, device=self.device, dtype=dtype) for d in self.datas]
        )
        models = [
            build_model(s, x, d.sample_shape)
            for s, x, d in zip(self.specs, self.x, self.datas, strict=True)
        ]
        self.base = copy.deepcopy(models[0]).to("meta")  # the shape of the computation
        self.params, self.buffers = stack_module_state(models)
        flow = [p for name, p in self.params.items() if not name.startswith("prior.")]
        prior = [p for name, p in self.params.items() if name.startswith("prior.")]
        self.optimizer, self.scheduler = make_optimizer(flow, prior, train, self.base.prior.dim)
        self.generators = [
            torch.Generator(device=self.device).manual_seed(s.train.seed) for s in self.specs
        ]
        self.step = 0
        self.curves: list[list[CurvePoint]] = [[] for _ in self.specs]
        self.wall_s = 0.0
        self.diverged_steps: list[int | None] = [None] * len(self.specs)
        self.finished: list[FitResult | None] = [None] * len(self.specs)
        self.stop_reasons: list[str | None] = [None] * len(self.specs)  # 'early_stop' or None
        k = len(self.specs)
        self._loss_sum = torch.zeros(k, device=self.device, dtype=dtype)
        self._first_bad = torch.full((k,), -1, device=self.device, dtype=torch.long)
        self._losses = vmap(self._member_loss)

    def _member_loss(self, params, buffers, x: Tensor, eps: Tensor) -> Tensor:
        weight = self.specs[0].prior.entropy_weight
        return functional_call(self.base, (params, buffers), (x, eps, weight))

    # -- one step ---------------------------------------------------------------------------

    def _draw(self) -> tuple[Tensor, Tensor]:
        """Each fit's batch, data noise and spread noise, from its own generator."""
        train = self.specs[0].train
        n, dim = self.x.shape[1], self.base.prior.dim
        batches, spreads = [], []
        for k, gen in enumerate(self.generators):
            idx = torch.randint(n, (train.batch_size,), generator=gen, device=self.device)
            x = self.x[k, idx]
            noise = torch.randn(x.shape, generator=gen, device=self.device, dtype=x.dtype)
            batches.append(x + noise_std(self.specs[k].train, self.step) * noise)
            eps = torch.randn((train.batch_size, dim), generator=gen, device=self.device,
                              dtype=x.dtype)
            spreads.append(self.specs[k].prior.sigma2**0.5 * eps)
        return torch.stack(batches), torch.stack(spreads)

    def _clip(self) -> None:
        """Per-fit gradient-norm clipping, as ``clip_grad_norm_`` does for one fit."""
        max_norm = self.specs[0].train.grad_clip
        if max_norm is None:
            return
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.reshape(-1, *([1] * (g.dim() - 1))))

    def _train_step(self) -> None:
        x, eps = self._draw()
        losses = self._losses(self.params, self.buffers, x, eps)
        finite = torch.isfinite(losses)
        self.optimizer.zero_grad(set_to_none=True)
        # A diverged fit's NaN must not reach the others through the shared backward pass.
        torch.where(finite, losses, torch.zeros_like(losses)).sum().backward()
        self._clip()
        self.optimizer.step()
        self.scheduler.step()
        losses = losses.detach()
        new_bad = ~finite & (self._first_bad < 0)
        self._first_bad = torch.where(new_bad, self.step, self._first_bad)
        self._loss_sum = self._loss_sum + losses
        self.step += 1

    # -- logging and results ----------------------------------------------------------------

    @torch.no_grad()
    def spectra(self) -> list[tuple[float, ...]]:
        """Each fit's eigenvalues of ``A A^T``, descending (all 1 for the fixed ``N(0, I)``)."""
        if "prior.weight" not in self.params:
            return [(1.0,) * self.base.prior.dim for _ in self.specs]
        a = torch.tril(self.params["prior.weight"]).double()
        values = torch.linalg.eigvalsh(a @ a.transpose(1, 2)).flip(1).clamp_min(0.0).cpu()
        return [tuple(float(v) for v in row) for row in values]

    def _log(self, since: int) -> list[CurvePoint | None]:
        first_bad = self._first_bad.tolist()
        losses = (self._loss_sum / max(1, self.step - since)).tolist()
        lr = self.optimizer.param_groups[0]["lr"]
        points: list[CurvePoint | None] = []
        for k, eigenvalues in enumerate(self.spectra()):
            if self.finished[k] is not None or self.diverged_steps[k] is not None:
                points.append(None)
                continue
            if first_bad[k] >= 0:
                self.diverged_steps[k] = first_bad[k]
            point = CurvePoint(
                step=self.step,
                loss=losses[k],
                noise_std=noise_std(self.specs[k].train, max(0, self.step - 1)),
                lr=lr,
                estimate=read_dimension(self.specs[k], eigenvalues),
                eigenvalues=eigenvalues,
            )
            self.curves[k].append(point)
            points.append(point)
        self._loss_sum = torch.zeros_like(self._loss_sum)
        return points

    def _result(self, k: int, eigenvalues: tuple[float, ...]) -> FitResult:
        return make_result(
            self.specs[k], self.datas[k], self.step, eigenvalues, self.curves[k],
            self.wall_s, self.device, self.diverged_steps[k], self.stop_reasons[k],
        )

    def results(self) -> list[FitResult]:
        """Every fit's outcome as it stands (a fit stopped early keeps its own)."""
        spectra = self.spectra()
        return [
            done if done is not None else self._result(k, spectra[k])
            for k, done in enumerate(self.finished)
        ]

    def _active(self) -> bool:
        return any(
            done is None and bad is None
            for done, bad in zip(self.finished, self.diverged_steps, strict=True)
        )

    def member(self, k: int) -> ManifoldFlow:
        """Fit ``k`` as a standalone ``ManifoldFlow`` holding a copy of its current weights."""
        spec, data = self.specs[k], self.datas[k]
        model = ManifoldFlow.build(spec.model, spec.prior, data.sample_shape, spec.train.seed)
        state = {name: t[k].detach() for name, t in {**self.params, **self.buffers}.items()}
        model.load_state_dict(state)
        return model.to(self.device, self.x.dtype)

    def artifacts(self, k: int) -> dict[str, np.ndarray]:
        """``fit_artifacts`` of fit ``k`` as it stands (read at its current estimate)."""
        curve = self.curves[k]
        estimate = curve[-1].estimate if curve else None
        return fit_artifacts(self.member(k), self.x[k], estimate, self.specs[k].train.seed)

    # -- the loop ---------------------------------------------------------------------------

    def run(
        self, callback: Callable[[int, CurvePoint, PackTrainer], Any] | None = None
    ) -> list[FitResult]:
        """Train every fit to ``train.steps``; ``callback(k, point, trainer)`` at each log.

        A callback returning ``True`` stops fit ``k`` there (its result is kept as it was), and
        so does an early stop (``early_stop_due`` on fit ``k``'s curve and settings); the pack
        trains on while any fit is still going. Wall time is shared: each fit's ``wall_s`` is
        the pack's.
        """
        steps, log_every = self.specs[0].train.steps, self.specs[0].train.log_every
        started = time.perf_counter()
        since = self.step
        try:
            while self.step < steps and self._active():
                self._train_step()
                if self.step % log_every == 0 or self.step == steps:
                    self.wall_s += time.perf_counter() - started
                    started = time.perf_counter()
                    points = self._log(since)
                    since = self.step
                    for k, point in enumerate(points):
                        if point is None:
                            continue
                        if callback is not None and callback(k, point, self) is True:
                            self.finished[k] = self._result(k, point.eigenvalues)
                        elif self.diverged_steps[k] is None and early_stop_due(
                            self.curves[k], self.specs[k].train
                        ):
                            self.stop_reasons[k] = "early_stop"
                            self.finished[k] = self._result(k, point.eigenvalues)
        finally:
            self.wall_s += time.perf_counter() - started
        return self.results()

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the pack: tensors, lists and numbers only."""
        return {
            "params": {k: v.detach() for k, v in self.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generators": [g.get_state() for g in self.generators],
            "step": self.step,
            "curves": [[dataclasses.asdict(p) for p in curve] for curve in self.curves],
            "finished": [k for k, done in enumerate(self.finished) if done is not None],
            "stop_reasons": list(self.stop_reasons),
            "wall_s": self.wall_s,
            "specs": [s.to_json() for s in self.specs],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``; refuses the state of a different pack."""
        if state["specs"] != [s.to_json() for s in self.specs]:
            raise ValueError("checkpoint: it belongs to a different pack of fits")
        with torch.no_grad():
            for name, value in state["params"].items():
                self.params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for gen, gen_state in zip(self.generators, state["generators"], strict=True):
            gen.set_state(gen_state)
        self.step = int(state["step"])
        self.curves = [
            [CurvePoint(**{**p, "eigenvalues": tuple(p["eigenvalues"])}) for p in curve]
            for curve in state["curves"]
        ]
        self.wall_s = float(state["wall_s"])
        self.stop_reasons = list(state.get("stop_reasons", [None] * len(self.specs)))
        for k in state["finished"]:
            last = self.curves[k][-1]
            self.finished[k] = make_result(
                self.specs[k], self.datas[k], last.step, last.eigenvalues, self.curves[k],
                self.wall_s, self.device, None, self.stop_reasons[k],
            )


def fit_pack(
    specs: Sequence[FitSpec],
    datas: Sequence[Dataset] | None = None,
    callback: Callable[[int, CurvePoint, PackTrainer], Any] | None = None,
    state: dict[str, Any] | None = None,
) -> list[FitResult]:
    """Train ``specs`` as one pack and return their results, in order."""
    trainer = PackTrainer(specs, datas)
    if state is not None:
        trainer.load_state_dict(state)
    return trainer.run(callback)
