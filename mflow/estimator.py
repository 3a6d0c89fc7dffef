"""``FlowDimension``: the intrinsic dimension of an array, as a scikit-learn estimator."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from mflow.config import (
    DataSpec,
    FitSpec,
    ModelSpec,
    PriorSpec,
    ReadoutSpec,
    TrainSpec,
    check_spec,
)
from mflow.datasets import Dataset
from mflow.datasets.arrays import MIN_ROWS, principal_scale
from mflow.fit import FitResult, Trainer
from mflow.jacobian import JACOBIAN_THRESHOLD, jacobian_dimension, local_variances
from mflow.readout import readout_floor

__all__ = ["PARAMETERS", "FlowDimension"]

# The defaults of every argument are the config's own: one place defines them.
_DATA, _MODEL, _PRIOR, _TRAIN, _READOUT = (
    DataSpec(), ModelSpec(), PriorSpec(), TrainSpec(), ReadoutSpec())

#: Each argument of ``FlowDimension`` and the ``FitSpec`` field it sets, ``(section, field)``.
#: Every ``TrainSpec`` field keeps its name; ``prior`` is ``prior.kind``.
PARAMETERS: dict[str, tuple[str, str]] = {
    "standardize": ("data", "standardize"),
    **{name: ("model", name)
       for name in ("volume_preserving", "couplings", "hidden", "depth", "clamp")},
    "prior": ("prior", "kind"),
    "sigma2": ("prior", "sigma2"),
    "entropy_weight": ("prior", "entropy_weight"),
    **{f.name: ("train", f.name) for f in dataclasses.fields(TrainSpec)},
    **{f.name: ("readout", f.name) for f in dataclasses.fields(ReadoutSpec)},
}


class FlowDimension(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    r"""The intrinsic dimension of points ``X`` ``(n, D)``, read from a trained manifold flow.

    A volume-preserving flow ``g`` (``|det J_g| = 1``) maps the points to codes ``z = g(x)``;
    the prior is the degenerate Gaussian ``N(0, A A^T)`` with ``A`` lower-triangular and
    learnable. Training maximises the spread likelihood
    ``E log N(g(x + s_x e) + eps; 0, A A^T + sigma2 I)``, ``eps ~ N(0, sigma2 I)``, while the
    data noise ``s_x`` is annealed from ``noise_start`` to ``noise_floor``. As ``g`` cannot
    change volume, the cheapest way to raise the likelihood is to lay the data along few
    directions and shrink ``A A^T`` in the others: the rank ``K`` of ``A A^T`` (eigenvalues
    above ``threshold * (sigma2 + noise_floor^2)``) counts the flat directions the flow needs,
    and the estimate is the local dimension of the codes ``g(x) E_K`` (``E_K``: the top ``K``
    eigenvectors), rounded and at most ``K`` (``mflow.local.headline_dimension``). The
    dimension is read at the scale ``noise_floor``, in units where the data's widest spread
    is 1 (``standardize``). Gorbunov et al., "On the latent space of flow-based models";
    see ``mflow.fit`` and ``mflow.readout``.

    One code path: ``fit`` builds a ``FitSpec`` (``fit_spec``) of the ``array`` dataset, the
    points standardised as a survey's ``array`` loader does (``mflow.datasets.arrays``), and
    runs ``mflow.fit.Trainer``, the loop and readout of every survey fit, on ``device``.

    Every argument is a ``FitSpec`` field (``PARAMETERS`` says which), with its default and
    meaning there: ``standardize`` (data); ``volume_preserving``, ``couplings``, ``hidden``,
    ``depth``, ``clamp`` (model, always ``kind='mlp'``); ``prior`` (``prior.kind``), ``sigma2``,
    ``entropy_weight`` (prior); every ``TrainSpec`` field (``steps``, ``lr``, ``noise_floor``,
    ``seed``, ``device``, ...); every ``ReadoutSpec`` field (``rule``, ``threshold``, ...).
    A ``batch_size`` above the number of points is cut to it (a survey refuses it).

    Attributes:
        dimension_: the estimate, ``FitResult.id_estimate`` (None when the fit diverged).
        dimension_pw_: per point of ``X``, the model's own count (``mflow.jacobian``): its
            local variances above the cut, ``(n,)``; None when the fit diverged. Its median at
            held-out points is ``FitResult.jacobian_dim``.
        rank_: the rank ``K`` of ``A A^T``, ``FitResult.id_rank``.
        spectrum_: the eigenvalues of ``A A^T``, descending, ``(D,)``.
        settled_: whether the estimate settled (``mflow.settle``): training on would not
            change it. An unsettled fit warns (``ConvergenceWarning``): raise ``steps``.
        result_: the ``FitResult``; ``spec_``: the ``FitSpec`` it came from.
        model_: the trained ``ManifoldFlow``, in float64, on the fit's device.
        mean_, scale_: ``X`` is standardised as ``(X - mean_) / scale_`` before the flow.
        n_features_in_: ``D``.

    Example:
        A line in ``R^2``, read at the noise floor from the start (``noise_start``) and
        logged often enough (``log_every``) for the settling rule to judge 100 steps:

        >>> t = np.linspace(-1.0, 1.0, 300)
        >>> X = np.c_[t, 0.5 * t]
        >>> est = FlowDimension(steps=100, log_every=10, noise_start=0.01, device="cpu").fit(X)
        >>> est.dimension_, est.settled_, est.transform(X).shape
        (1, True, (300, 1))
        >>> bool(np.abs(est.inverse_transform(est.transform(X)) - X).max() < 0.05)
        True
    """

    def __init__(
        self,
        *,
        standardize: bool = _DATA.standardize,
        volume_preserving: bool = _MODEL.volume_preserving,
        couplings: int = _MODEL.couplings,
        hidden: int = _MODEL.hidden,
        depth: int = _MODEL.depth,
        clamp: float = _MODEL.clamp,
        prior: str = _PRIOR.kind,
        sigma2: float = _PRIOR.sigma2,
        entropy_weight: float = _PRIOR.entropy_weight,
        steps: int = _TRAIN.steps,
        prior_init: str = _TRAIN.prior_init,
        batch_size: int = _TRAIN.batch_size,
        lr: float = _TRAIN.lr,
        lr_prior: float = _TRAIN.lr_prior,
        lr_prior_dim: int | None = _TRAIN.lr_prior_dim,
        lr_decay: float = _TRAIN.lr_decay,
        lr_decay_every: int = _TRAIN.lr_decay_every,
        weight_decay: float = _TRAIN.weight_decay,
        weight_decay_prior: float = _TRAIN.weight_decay_prior,
        noise_start: float = _TRAIN.noise_start,
        noise_floor: float = _TRAIN.noise_floor,
        noise_decay: float = _TRAIN.noise_decay,
        noise_decay_every: int = _TRAIN.noise_decay_every,
        grad_clip: float | None = _TRAIN.grad_clip,
        seed: int = _TRAIN.seed,
        log_every: int = _TRAIN.log_every,
        early_stop_window: int = _TRAIN.early_stop_window,
        early_stop_tol: float = _TRAIN.early_stop_tol,
        prior_update: str | None = _TRAIN.prior_update,
        prior_every: int | None = _TRAIN.prior_every,
        prior_ema: float | None = _TRAIN.prior_ema,
        device: str = _TRAIN.device,
        dtype: str = _TRAIN.dtype,
        rule: str = _READOUT.rule,
        threshold: float = _READOUT.threshold,
        settle_window: int | None = _READOUT.settle_window,
        settle_drift: float | None = _READOUT.settle_drift,
        settle_margin: float | None = _READOUT.settle_margin,
    ) -> None:
        self.standardize = standardize
        self.volume_preserving = volume_preserving
        self.couplings = couplings
        self.hidden = hidden
        self.depth = depth
        self.clamp = clamp
        self.prior = prior
        self.sigma2 = sigma2
        self.entropy_weight = entropy_weight
        self.steps = steps
        self.prior_init = prior_init
        self.batch_size = batch_size
        self.lr = lr
        self.lr_prior = lr_prior
        self.lr_prior_dim = lr_prior_dim
        self.lr_decay = lr_decay
        self.lr_decay_every = lr_decay_every
        self.weight_decay = weight_decay
        self.weight_decay_prior = weight_decay_prior
        self.noise_start = noise_start
        self.noise_floor = noise_floor
        self.noise_decay = noise_decay
        self.noise_decay_every = noise_decay_every
        self.grad_clip = grad_clip
        self.seed = seed
        self.log_every = log_every
        self.early_stop_window = early_stop_window
        self.early_stop_tol = early_stop_tol
        self.prior_update = prior_update
        self.prior_every = prior_every
        self.prior_ema = prior_ema
        self.device = device
        self.dtype = dtype
        self.rule = rule
        self.threshold = threshold
        self.settle_window = settle_window
        self.settle_drift = settle_drift
        self.settle_margin = settle_margin

    # -- the fit ----------------------------------------------------------------------------

    def fit_spec(self, n_samples: int) -> FitSpec:
        """The ``FitSpec`` that ``fit`` runs on ``n_samples`` points: the ``array`` dataset
        of that size, an MLP flow, and this estimator's arguments (``PARAMETERS``); each
        section is checked against the bounds declared on its fields (``ValueError``)."""
        sections: dict[str, dict[str, Any]] = {
            "data": {"dataset": "array", "n": n_samples}, "model": {"kind": "mlp"},
            "prior": {}, "train": {}, "readout": {},
        }
        for name, (section, field) in PARAMETERS.items():
            sections[section][field] = getattr(self, name)
        sections["train"]["batch_size"] = min(self.batch_size, n_samples)
        spec = FitSpec().replace(**sections)
        check_spec(spec)
        return spec

    def fit(self, X: ArrayLike, y: Any = None) -> FlowDimension:
        """Train the flow on ``X`` ``(n, D)`` (``n >= 2``, ``D >= 2``, finite) and read its
        dimension. ``y`` is ignored. Returns ``self``."""
        x = validate_data(self, X, dtype=np.float64, ensure_min_samples=MIN_ROWS,
                          ensure_min_features=2)
        spec = self.fit_spec(len(x))
        self.mean_, self.scale_ = (principal_scale(x, "X") if self.standardize
                                   else (np.zeros(x.shape[1]), 1.0))
        points = (x - self.mean_) / self.scale_
        # As mflow.datasets.load hands a survey fit its points: float32, contiguous.
        data = Dataset("array", np.ascontiguousarray(points, dtype=np.float32))
        trainer = Trainer(spec, data)
        result = trainer.run()
        self.spec_, self.result_ = spec, result
        self.model_ = trainer.model.to(torch.float64).eval()
        self.dimension_ = result.id_estimate
        self.dimension_pw_ = None
        if result.status == "ok":
            variances = local_variances(self.model_, self._tensor(points))
            self.dimension_pw_ = jacobian_dimension(
                variances, readout_floor(spec), JACOBIAN_THRESHOLD).counts.astype(np.float64)
        self.rank_ = result.id_rank
        self.spectrum_ = np.asarray(result.eigenvalues, dtype=np.float64)
        self.settled_ = bool(result.settled)
        _warn_unsettled(result)
        return self

    # -- codes ------------------------------------------------------------------------------

    def transform(self, X: ArrayLike) -> np.ndarray:
        """The codes ``g((X - mean_) / scale_) E_k`` ``(n, k)`` in the ``k = dimension_``
        leading eigen-directions of ``A A^T`` (``ManifoldFlow.project``), float64."""
        check_is_fitted(self)
        x = validate_data(self, X, dtype=np.float64, reset=False)
        with torch.no_grad():
            codes = self.model_.project(self._tensor((x - self.mean_) / self.scale_), self._k())
        return codes.cpu().numpy()

    def inverse_transform(self, X: ArrayLike) -> np.ndarray:
        """Points ``(n, D)`` from codes ``X`` ``(n, k)``: ``g^{-1}(X E_k^T) * scale_ + mean_``,
        the code padded with zeros in the dropped eigen-directions of ``A A^T``."""
        check_is_fitted(self)
        k = self._k()
        codes = check_array(X, dtype=np.float64, ensure_min_features=0)
        if codes.shape[1] != k:
            raise ValueError(f"inverse_transform: X has {codes.shape[1]} features, but "
                             f"{type(self).__name__} keeps {k} (dimension_)")
        with torch.no_grad():
            z = self._tensor(codes) @ self.model_.prior.eigenvectors(k).T
            x = self.model_.decode(z).cpu().numpy()
        return x * self.scale_ + self.mean_

    @property
    def _n_features_out(self) -> int:
        """Output width for ``get_feature_names_out``: ``dimension_`` codes."""
        return self._k()

    def _k(self) -> int:
        if self.dimension_ is None:
            why = "collapsed" if self.result_.collapsed else f"diverged ({self.result_.error})"
            raise ValueError(f"{type(self).__name__}: the fit {why} and read no dimension; "
                             f"nothing to project onto")
        return max(self.dimension_, 0)

    def _tensor(self, values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(values, dtype=torch.float64, device=self.model_.offset.device)


def _warn_unsettled(result: FitResult) -> None:
    if result.status != "ok":
        warnings.warn(f"FlowDimension: {result.error}; dimension_ is None", ConvergenceWarning,
                      stacklevel=3)
    elif not result.settled:
        warnings.warn(f"FlowDimension: the estimate did not settle in {result.steps} steps "
                      "(settled_ is False): raise steps", ConvergenceWarning, stacklevel=3)

