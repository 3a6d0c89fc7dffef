"""The training loop: one or several same-shaped fits trained as one vectorised ensemble.

A survey's fits are mostly small, and a small model leaves a device (or a CPU core) idle
between tiny kernels. ``PackTrainer`` stacks the parameters of K fits (``torch.func``'s
``stack_module_state``) and evaluates all K losses with one ``vmap``-ed call, so each kernel
does K fits' work. The fits stay separate: each has its own data, its own random generator
(drawn in the same order as ``Trainer`` draws, so a packed fit follows its unpacked run up to
floating-point rounding), its own gradient clipping, divergence, curve and result. Adam is
element-wise, so one Adam over the stacked parameters is K independent Adams.

This is the only training loop: a single fit (``mflow.fit.Trainer``) is a pack of one. A fit
that stops (it settled, a callback stopped it, or its loss became NaN or inf) is frozen where
it stopped: from that step on no update reaches its weights (they are restored after each
shared optimiser step), so its spectrum, samples and projections all come from the weights it
stopped with, and a diverged fit keeps the weights of its last finite step.

Fits can share a pack when everything but ``data.seed``, ``data.classes``, ``data.latent_dim``,
``train.seed`` and the data-noise schedule (``train.noise_start``, ``noise_floor``) is equal,
and their data have equal shapes; two datasets whose loaders declare one point shape (the
quickstart's sine and line) may share a pack too: see ``pack_key``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from mflow.config import FitSpec, canonical_json
from mflow.datasets import Dataset, check_enough_rows, load, sample_shape
from mflow.fit import (
    DTYPES,
    CurvePoint,
    FitResult,
    build_model,
    check_train,
    early_stop_due,
    fit_artifacts,
    flowless_estimate,
    heldout_batch,
    heldout_loss,
    jacobian_estimate,
    local_estimate,
    make_optimizer,
    make_result,
    noise_std,
    prior_update,
    prior_update_settings,
    read_dimension,
    resolve_device,
)
from mflow.jacobian import JACOBIAN_THRESHOLD
from mflow.local import LocalDimension
from mflow.model import ManifoldFlow
from mflow.readout import readout_floor

__all__ = ["PACKABLE_FIELDS", "PackTrainer", "fit_pack", "pack_key"]

#: Fields that may differ between the fits of one pack.
PACKABLE_FIELDS = {
    # Equal-sized subsets of one dataset (another seed, class or latent dimension) have equal
    # shapes; PackTrainer checks the shapes.
    "data": ("seed", "classes", "latent_dim"),
    "train": ("seed", "noise_start", "noise_floor"),
}


def pack_key(spec: FitSpec) -> str:
    """Fits with equal keys can share a pack (same architecture, data shape and schedule).

    ``data.dataset`` may differ too where the loaders declare the shape of a point
    (``mflow.datasets.sample_shape``): each fit trains on its own points, so a sine and a line
    of 2,000 points each are as packable as two sines; the key then holds the shape instead.

    Example:
        >>> from mflow.config import DataSpec
        >>> sine, line, scurve = (FitSpec(data=DataSpec(d)) for d in ("sine", "line", "scurve"))
        >>> pack_key(sine) == pack_key(line), pack_key(sine) == pack_key(scurve)
        (True, False)
    """
    blank = {
        section: {name: None for name in names} for section, names in PACKABLE_FIELDS.items()
    }
    shape = sample_shape(spec.data)
    if shape is None:
        return spec.replace(**blank).to_json()
    blank["data"] = {**blank["data"], "dataset": None}
    return f"{list(shape)} {spec.replace(**blank).to_json()}"


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
        # Each fit's fixed held-out batch (None where its data hold none out): its loss is
        # logged at the noise floor, for the settling rule.
        self._heldout = [
            heldout_batch(d, s.train.noise_floor, s.prior.sigma2, s.train.seed, x)
            for s, x, d in zip(self.specs, self.x, self.datas, strict=True)
        ]
        self.params, self.buffers = stack_module_state(models)
        # The closed-form prior: A A^T follows the codes' second moment instead of Adam.
        self.moment = prior_update(train) == "moment" and "prior.weight" in self.params
        flow = [p for name, p in self.params.items() if not name.startswith("prior.")]
        prior = [p for name, p in self.params.items() if name.startswith("prior.")]
        if self.moment:
            for p in prior:
                p.requires_grad_(False)
            prior = []
        self.optimizer, self.scheduler = make_optimizer(flow, prior, train, self.base.prior.dim)
        self.generators = [
            torch.Generator(device=self.device).manual_seed(s.train.seed) for s in self.specs
        ]
        k = len(self.specs)
        self.step = 0
        self.curves: list[list[CurvePoint]] = [[] for _ in self.specs]
        self.wall_s = 0.0
        self.diverged_steps: list[int | None] = [None] * k
        self.stop_reasons: list[str | None] = [None] * k  # 'early_stop' once settled
        self.stopped_at: list[tuple[int, float] | None] = [None] * k  # (step, wall_s) at stop
        self._paused: set[int] = set()  # stopped by a callback: for this run only
        self._flowless_cache: dict[int, LocalDimension | None] = {}
        # Kept on the device and read only at logging steps: no host sync per step.
        self._loss_sum = torch.zeros(k, device=self.device, dtype=dtype)
        self._loss_count = torch.zeros(k, device=self.device, dtype=dtype)
        self._first_bad = torch.full((k,), -1, device=self.device, dtype=torch.long)
        self._live = torch.ones(k, device=self.device, dtype=torch.bool)
        self._moment = self._covariances() if self.moment else None
        # A pack of one skips vmap, whose per-operation cost is a third of a small fit's step.
        self._losses = vmap(self._member_loss) if k > 1 else self._lone_loss

    def _member_loss(self, params, buffers, x: Tensor, eps: Tensor):
        weight = self.specs[0].prior.entropy_weight
        return functional_call(self.base, (params, buffers), (x, eps, weight, self.moment),
                               tie_weights=False)  # no tied weights: skip the search for them

    def _lone_loss(self, params, buffers, x: Tensor, eps: Tensor):
        """``_member_loss`` of a pack of one, shaped as the vmap-ed call's output."""
        out = self._member_loss({n: v[0] for n, v in params.items()},
                                {n: v[0] for n, v in buffers.items()}, x[0], eps[0])
        return tuple(o.unsqueeze(0) for o in out) if self.moment else out.unsqueeze(0)

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
        norms = torch.cat([g.flatten(1) for g in grads], dim=1).norm(dim=1)
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(_per_fit(scale, g))

    def _train_step(self) -> None:
        x, eps = self._draw()
        out = self._losses(self.params, self.buffers, x, eps)
        losses, codes = out if self.moment else (out, None)
        finite = torch.isfinite(losses.detach())
        new_bad = self._live & ~finite & (self._first_bad < 0)
        self._first_bad = torch.where(new_bad, self.step, self._first_bad)
        live = self._live & finite
        self.optimizer.zero_grad(set_to_none=True)
        # A diverged or stopped fit's loss must not reach the shared backward pass.
        torch.where(live, losses, 0.0).sum().backward()
        self._clip()
        # Shared Adam moves every stacked fit (momentum, weight decay): the weights of the fits
        # that are not training are put back where they were. On a CPU, reading the mask costs
        # nothing, and a step where every fit trains skips the copies.
        restore = self.device.type != "cpu" or not bool(live.all())
        trained = {name: p for name, p in self.params.items() if p.requires_grad and restore}
        before = {name: p.detach().clone() for name, p in trained.items()}
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            for name, p in trained.items():
                p.copy_(torch.where(_per_fit(live, p), p, before[name]))
            if codes is not None:
                self._follow_moment(codes, live)
        self._live = live
        self._loss_sum = self._loss_sum + torch.where(live, losses.detach(), 0.0)
        self._loss_count = self._loss_count + live.to(self._loss_count.dtype)
        self.step += 1

    def _covariances(self) -> Tensor:
        """Each fit's ``A A^T``, stacked, in float64."""
        a = torch.tril(self.params["prior.weight"].detach()).double()
        return a @ a.transpose(1, 2)

    def _follow_moment(self, codes: Tensor, live: Tensor) -> None:
        """Move the second-moment average of the codes by one batch; every ``prior_every``
        steps set ``A`` to its Cholesky factor (fits whose factor fails keep their ``A``)."""
        train = self.specs[0].train
        every, decay = prior_update_settings(train)
        codes = codes.double()
        batch = codes.transpose(1, 2) @ codes / codes.shape[1]
        moved = decay * self._moment + (1.0 - decay) * batch
        self._moment = torch.where(live[:, None, None], moved, self._moment)
        if (self.step + 1) % every == 0:
            chol, info = torch.linalg.cholesky_ex(self._moment)
            take = (live & (info == 0))[:, None, None]
            weight = self.params["prior.weight"]
            weight.copy_(torch.where(take, chol.to(weight.dtype), weight))

    # -- logging and results ----------------------------------------------------------------

    @torch.no_grad()
    def spectra(self) -> list[tuple[float, ...]]:
        """Each fit's eigenvalues of ``A A^T``, descending (all 1 for the fixed ``N(0, I)``)."""
        if "prior.weight" not in self.params:
            return [(1.0,) * self.base.prior.dim for _ in self.specs]
        values = torch.linalg.eigvalsh(self._covariances()).flip(1).clamp_min(0.0).cpu()
        return [tuple(float(v) for v in row) for row in values]

    def _training(self, k: int) -> bool:
        return (self.diverged_steps[k] is None and self.stop_reasons[k] is None
                and k not in self._paused)

    def _refresh_live(self) -> None:
        """The device's mask of training fits, from the host's view (and NaNs not yet logged)."""
        training = torch.tensor([self._training(k) for k in range(len(self.specs))],
                                device=self.device)
        self._live = training & (self._first_bad < 0)

    def _stop(self, k: int) -> None:
        self.stopped_at[k] = (self.step, self.wall_s)

    def _log(self) -> list[CurvePoint | None]:
        """Each training fit's point at this step (None for fits stopped before it)."""
        first_bad = self._first_bad.tolist()
        losses = (self._loss_sum / self._loss_count.clamp_min(1)).tolist()
        lr = self.optimizer.param_groups[0]["lr"]
        points: list[CurvePoint | None] = []
        for k, eigenvalues in enumerate(self.spectra()):
            if not self._training(k):
                points.append(None)
                continue
            if first_bad[k] >= 0:
                self.diverged_steps[k] = first_bad[k]
                self._stop(k)
            train = self.specs[k].train
            sigma = noise_std(train, max(0, self.step - 1))
            estimate = read_dimension(self.specs[k], eigenvalues)
            local = held = None
            # the headline needs the codes' local dimension, the settling rule the held-out
            # loss; both are read only at the noise floor, where the rule looks (mflow.settle)
            wanted = estimate >= 1 or self._heldout[k] is not None
            if first_bad[k] < 0 and sigma <= train.noise_floor and wanted:
                model = self.member(k)
                if estimate >= 1:
                    found = local_estimate(model, self.x[k], estimate, train.seed)
                    local = None if found is None else found.value
                if self._heldout[k] is not None:
                    held = heldout_loss(model, self._heldout[k])
            point = CurvePoint(
                step=self.step,
                loss=math.nan if first_bad[k] >= 0 else losses[k],
                noise_std=sigma,
                lr=lr,
                estimate=estimate,
                eigenvalues=eigenvalues,
                local_dim=local,
                heldout_loss=held,
            )
            self.curves[k].append(point)
            points.append(point)
        self._loss_sum = torch.zeros_like(self._loss_sum)
        self._loss_count = torch.zeros_like(self._loss_count)
        return points

    def results(self) -> list[FitResult]:
        """Every fit's outcome as it stands (a stopped fit's from the weights it stopped with),
        with the local dimension of its codes (``mflow.fit.local_estimate``)."""
        results = []
        for k, eigenvalues in enumerate(self.spectra()):
            steps, wall_s = self.stopped_at[k] or (self.step, self.wall_s)
            local = jacobian = None
            spec, data = self.specs[k], self.datas[k]
            if self.diverged_steps[k] is None:
                rank = read_dimension(spec, eigenvalues)
                model = self.member(k)
                local = local_estimate(model, self.x[k], rank, spec.train.seed)
                jacobian = jacobian_estimate(model, data, self.x[k], readout_floor(spec),
                                             JACOBIAN_THRESHOLD, spec.train.seed)
            results.append(make_result(
                spec, data, steps, eigenvalues, self.curves[k], wall_s, self.device,
                self.diverged_steps[k], self.stop_reasons[k], local, jacobian,
                self._flowless(k),
            ))
        return results

    def _flowless(self, k: int) -> LocalDimension | None:
        """The ablation's reading of fit ``k``'s raw points (computed once: they never move)."""
        if k not in self._flowless_cache:
            self._flowless_cache[k] = flowless_estimate(self.datas[k].x, self.specs[k].train.seed)
        return self._flowless_cache[k]

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
        self,
        callback: Callable[[int, CurvePoint, PackTrainer], Any] | None = None,
        after_log: Callable[[PackTrainer], Any] | None = None,
    ) -> list[FitResult]:
        """Train every fit to ``train.steps``; ``callback(k, point, trainer)`` at each log of
        a fit that is still training (not on the point where its loss was found non-finite),
        and ``after_log(trainer)`` once per logged step, after every fit's stop at that step
        is decided: the pack's state is whole there, so that is where to checkpoint it.

        A callback returning ``True`` stops fit ``k`` there for this run, as if it were killed
        (a later ``run`` continues it); a fit that settled (``early_stop_window > 0``, see
        ``mflow.settle``) stops for good. Stopped fits are frozen; the loop trains on while
        any fit is training. Wall time is shared: each fit's ``wall_s`` is the pack's up to
        its stop.
        """
        steps, log_every = self.specs[0].train.steps, self.specs[0].train.log_every
        for k in self._paused:
            self.stopped_at[k] = None
        self._paused.clear()
        self._refresh_live()
        started, first_step = time.perf_counter(), self.step
        try:
            while self.step < steps and any(map(self._training, range(len(self.specs)))):
                self._train_step()
                if self.step % log_every and self.step != steps:
                    continue
                self.wall_s += time.perf_counter() - started
                started = time.perf_counter()
                changed = False
                for k, point in enumerate(self._log()):
                    if point is None or self.diverged_steps[k] is not None:
                        changed = changed or point is not None
                        continue
                    if callback is not None and callback(k, point, self) is True:
                        self._paused.add(k)
                    elif early_stop_due(self.curves[k], self.specs[k]):
                        self.stop_reasons[k] = "early_stop"
                    else:
                        continue
                    self._stop(k)
                    changed = True
                if changed:
                    self._refresh_live()
                if after_log is not None:
                    after_log(self)
        finally:
            if self.step > first_step:  # a run with nothing left to train costs no time
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
            "wall_s": self.wall_s,
            "stop_reasons": list(self.stop_reasons),
            "diverged_steps": list(self.diverged_steps),
            "stopped_at": [None if s is None or k in self._paused else list(s)
                           for k, s in enumerate(self.stopped_at)],
            "first_bad": self._first_bad,
            "loss_sum": self._loss_sum,
            "loss_count": self._loss_count,
            "moment": self._moment,
            "specs": [s.to_json() for s in self.specs],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``; refuses the state of other fits, or of an older
        version of this loop."""
        if "specs" not in state or "diverged_steps" not in state:
            raise ValueError("checkpoint: written by an older version of the training loop")
        # canonical: a state saved before an optional field was added is still these fits
        if [canonical_json(s) for s in state["specs"]] != [canonical_json(s) for s in self.specs]:
            raise ValueError("checkpoint: it belongs to a different fit spec or pack of fits")
        with torch.no_grad():
            for name, value in state["params"].items():
                self.params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for gen, gen_state in zip(self.generators, state["generators"], strict=True):
            gen.set_state(gen_state)
        self.step = int(state["step"])
        self.curves = [
            [CurvePoint.from_dict(p) for p in curve]
            for curve in state["curves"]
        ]
        self.wall_s = float(state["wall_s"])
        self.stop_reasons = list(state["stop_reasons"])
        self.diverged_steps = list(state["diverged_steps"])
        self.stopped_at = [None if s is None else (int(s[0]), float(s[1]))
                           for s in state["stopped_at"]]
        self._paused.clear()
        self._first_bad = state["first_bad"].to(self.device)
        self._loss_sum = state["loss_sum"].to(self.device)
        self._loss_count = state["loss_count"].to(self.device)
        if self.moment:
            self._moment = state["moment"].to(self.device)
        self._refresh_live()


def _per_fit(mask: Tensor, like: Tensor) -> Tensor:
    """A per-fit mask ``(K,)`` shaped to broadcast over stacked parameters ``(K, ...)``."""
    return mask.reshape(-1, *([1] * (like.dim() - 1)))


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
