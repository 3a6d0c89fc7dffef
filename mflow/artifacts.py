"""What a trained model makes of its data, kept beside a fit's row: samples, the latent
projection of the training points, the local dimension of their codes, and the loss of the
points it holds out."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mflow.datasets import Dataset
from mflow.jacobian import JacobianDimension, jacobian_dimension, local_variances
from mflow.local import LOCAL_RULE, LocalDimension, code_dimension, local_dimension
from mflow.model import ManifoldFlow
from mflow.objective import spread_noise

__all__ = ["FLOWLESS_COMPONENTS", "JACOBIAN_ENTRIES", "READ_POINTS", "PROJECTED", "SAMPLES_IMAGE",
           "SAMPLES_VECTOR", "fit_artifacts", "flowless_estimate", "heldout_batch",
           "heldout_loss", "jacobian_estimate", "local_codes", "local_estimate"]

SAMPLES_IMAGE = 16  # model samples kept per fit of images (a grid in the report)
SAMPLES_VECTOR = 1000  # per fit of vectors (a scatter, and the distance to the true manifold)
PROJECTED = 1000  # training points whose latent projection is kept
# Training points whose codes the local readout reads (and the flowless ablation, raw): twice
# as many as the kept projection, as the nearest-neighbour readings' bias falls with n
READ_POINTS = 2000
# The Jacobian readout reads at most this many Jacobian entries (points x D^2) per fit, and
# 8 to 200 points: 200 points up to D = 223, 16 at D = 784 (about 15 s on one CPU core).
JACOBIAN_ENTRIES = 10_000_000
FLOWLESS_COMPONENTS = 100  # the flowless readout reads points on their leading principal axes
HELDOUT_LOSS_POINTS = 200  # held-out points whose loss is logged (mflow.settle's rule 5)


@torch.no_grad()
def fit_artifacts(
    model: ManifoldFlow, x: Tensor, estimate: int | None, seed: int
) -> dict[str, np.ndarray]:
    """What a trained model makes of its data, small enough to keep beside the fit's row.

    ``samples``: ``g^{-1}(z)``, ``z ~`` the prior (``SAMPLES_IMAGE`` for images, else
    ``SAMPLES_VECTOR``), in data units. ``projection``: ``g(x) E_k`` of up to ``PROJECTED``
    training points, ``k = min(max(estimate, 1), 3)``; ``index``: which points (rows of ``x``).

    Example:
        >>> from mflow.config import FitSpec
        >>> from mflow.fit import Trainer
        >>> trainer = Trainer(FitSpec().replace(train={"steps": 0}))
        >>> sorted((k, v.shape) for k, v in fit_artifacts(trainer.model, trainer.x, 1, 0).items())
        [('index', (1000,)), ('projection', (1000, 1)), ('samples', (1000, 2))]
    """
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    n_samples = SAMPLES_IMAGE if x.dim() > 2 else SAMPLES_VECTOR
    samples = model.sample(n_samples, gen).float().cpu().numpy()
    index = _projected_index(x.shape[0], seed)
    k = min(max(estimate or 1, 1), 3, model.prior.dim)
    projection = model.project(x[torch.as_tensor(index, device=x.device)], k)
    model.train(was_training)
    return {"samples": samples, "projection": projection.float().cpu().numpy(), "index": index}


def _projected_index(n: int, seed: int, size: int = PROJECTED) -> np.ndarray:
    """Up to ``size`` training points drawn by ``seed``, sorted: by default those whose codes
    are kept (with ``READ_POINTS``, those the local readout reads)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(n, size), replace=False))


@torch.no_grad()
def local_codes(
    model: ManifoldFlow, x: Tensor, rank: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The codes ``g(x) E_K`` (float64) of up to ``READ_POINTS`` training points, in the
    ``K = rank`` leading eigen-directions of ``A A^T``, and which points (rows of ``x``) they
    are."""
    index = _projected_index(x.shape[0], seed, READ_POINTS)
    was_training = model.training
    model.eval()
    codes = model.project(x[torch.as_tensor(index, device=x.device)], rank)
    model.train(was_training)
    return codes.double().cpu().numpy(), index


def local_estimate(
    model: ManifoldFlow, x: Tensor, rank: int, seed: int, rule: str = LOCAL_RULE
) -> LocalDimension | None:
    """The local dimension of the codes in the ``rank`` leading directions, read against the
    prior's variances there (``mflow.local.code_dimension``); None when there is nothing to read
    (``rank < 1``, fewer than 3 points, codes that are not finite or all coincide)."""
    if rank < 1 or x.shape[0] < 3:
        return None
    k = min(rank, model.prior.dim)
    codes, _ = local_codes(model, x, k, seed)
    if not np.all(np.isfinite(codes)):
        return None
    try:
        return code_dimension(codes, model.prior.spectrum()[:k].cpu().numpy(), rule)
    except ValueError:  # no distinct neighbours: nothing to read
        return None


def jacobian_estimate(
    model: ManifoldFlow, data: Dataset, x: Tensor, floor: float, threshold: float, seed: int
) -> tuple[JacobianDimension, str] | None:
    """The Jacobian readout (``mflow.jacobian``) of the fit at the data's held-out points
    (``Dataset.heldout``), or, where the loader holds none out, at training points, and which
    (``'heldout'`` or ``'train'``); None when the points' variances are not finite.

    ``x``: the training points on the model's device and dtype."""
    dim = int(np.prod(x.shape[1:]))
    count = max(8, min(200, JACOBIAN_ENTRIES // (dim * dim)))
    if data.heldout is not None and len(data.heldout):
        points, where = torch.as_tensor(data.heldout[:count]).to(x), "heldout"
    else:
        points, where = x[torch.as_tensor(_projected_index(x.shape[0], seed)[:count])], "train"
    variances = local_variances(model, points)
    if not np.all(np.isfinite(variances)):
        return None
    return jacobian_dimension(variances, floor, threshold), where


def flowless_estimate(x: np.ndarray, seed: int, rule: str = LOCAL_RULE) -> LocalDimension | None:
    """The ablation: the codes' local readout without a flow (``local_dimension``, with no prior
    to test against), on up to ``READ_POINTS`` raw training points, flattened and put on their
    ``FLOWLESS_COMPONENTS`` leading principal axes; None where there is nothing to read."""
    flat = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
    flat = flat[_projected_index(flat.shape[0], seed, READ_POINTS)]
    flat = flat - flat.mean(axis=0)
    if flat.shape[1] > FLOWLESS_COMPONENTS:
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        flat = flat @ vt[:FLOWLESS_COMPONENTS].T
    if flat.shape[0] < 3:
        return None
    try:
        return local_dimension(flat, rule)
    except ValueError:
        return None


def heldout_batch(
    data: Dataset, noise_floor: float, sigma2: float, seed: int, like: Tensor
) -> tuple[Tensor, Tensor] | None:
    """A fixed batch for the held-out loss: up to ``HELDOUT_LOSS_POINTS`` of the data's
    held-out points with data noise at ``noise_floor`` added, and spread noise of variance
    ``sigma2``, both drawn once from ``seed`` (on the device and dtype of ``like``), so that
    the loss moves only as the model does. None where the data hold no points out."""
    if data.heldout is None or not len(data.heldout):
        return None
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on any device
    x = torch.as_tensor(data.heldout[:HELDOUT_LOSS_POINTS], dtype=torch.float64)
    x = x + noise_floor * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    eps = spread_noise((x.shape[0], int(np.prod(x.shape[1:]))), x, sigma2, gen)
    return x.to(like), eps.to(like)


@torch.no_grad()
def heldout_loss(model: ManifoldFlow, batch: tuple[Tensor, Tensor]) -> float:
    """The training objective (``mflow.objective``, without the entropy term) of the model at
    a ``heldout_batch``: how well it describes points it never trained on.

    Example:
        >>> from mflow.config import FitSpec
        >>> from mflow.fit import Trainer
        >>> t = Trainer(FitSpec().replace(train={"steps": 0}))
        >>> data = Dataset("d", np.zeros((4, 2)), heldout=np.zeros((3, 2), dtype=np.float32))
        >>> batch = heldout_batch(data, 0.01, 1e-4, 0, t.x)
        >>> [tuple(b.shape) for b in batch], bool(np.isfinite(heldout_loss(t.model, batch)))
        ([(3, 2), (3, 2)], True)
    """
    was_training = model.training
    model.eval()
    loss = float(model(*batch))
    model.train(was_training)
    return loss
