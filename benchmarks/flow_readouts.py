"""Readouts of trained flows side by side, on scikit-dimension's benchmark manifolds.

Per manifold (``BenchmarkManifolds(random_state=R)``, N points): the first ``n`` rows train a
fit with the project's defaults for a user's array (standardised as ``dataset: array`` does),
the rest are held out. Each fit's model is cached under ``--cache``, so readouts can be compared
again without retraining. Printed per case and in total (exact count, mean absolute error):

- ``rank``: the rank of ``A A^T`` (the paper's readout); ``head``: the fit's stored headline;
- ``jac@t``: the Jacobian readout (``mflow.jacobian``) on up to 200 held-out rows, local
  variances above ``t`` times the readout floor, median over points;
- ``soft@s``: a soft Jacobian count at the blur scale ``s`` times the readout floor (the
  LIDL/FLIPD-style count, ``soft_count``), on the same points;
- the same readouts without a flow: ``flowless`` (``mflow.local.local_dimension`` with the
  fit's rule on the raw training rows), and TwoNN / MLE from scikit-dimension on the same rows.

``--files DIR/manifest.json`` reads other cases instead: ``.npy`` arrays of known dimension
listed in a manifest (``benchmarks/heldout_2026_12_06.py`` writes one).

Run: python benchmarks/flow_readouts.py [--replicates 0 1] [--cases M1_Sphere ...]
         [--files DIR/manifest.json] [--cache benchmarks/.cache/flow_readouts] [--workers 2]
         [--steps 4000] [--json rows.json]
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

N_POINTS, N_TRAIN = 2500, 2000
JACOBIAN_POINTS = 200  # held-out rows the Jacobian readout reads, as a survey fit does
THRESHOLDS = (2.0, 4.0, 8.0, 20.0)
SOFT_SCALES = (20.0, 50.0)  # the soft count's blur scales, in units of the readout floor


def manifolds(state: int) -> dict[str, tuple[int, np.ndarray]]:
    import skdim

    bm = skdim.datasets.BenchmarkManifolds(random_state=state)
    data = bm.generate(n=N_POINTS)
    return {name: (int(bm._dict_truth[name][0]), np.asarray(x, dtype=np.float64))
            for name, x in data.items()}


def from_manifest(path: Path) -> dict[str, tuple[int, np.ndarray]]:
    """The cases a manifest lists: name -> (true dimension, points)."""
    rows = json.loads(path.read_text())
    return {r["name"]: (int(r["true_dim"]), np.load(path.parent / r["path"])) for r in rows}


def _split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training rows standardised as the ``array`` dataset does; held-out rows alike."""
    from mflow.datasets.arrays import principal_scale

    mean, scale = principal_scale(x[:N_TRAIN], "train")
    return (x[:N_TRAIN] - mean) / scale, (x[N_TRAIN:] - mean) / scale


def cached_fit(d: int, x: np.ndarray, path: Path, steps: int, state: int = 0):
    """The ``Trainer`` of a cached fit of ``x`` (its state read from ``path``), with the
    standardised training and held-out rows: the fits of this script and of
    ``settled_holds.py``, read again without training."""
    import torch

    from mflow.config import DataSpec, FitSpec
    from mflow.datasets import Dataset
    from mflow.fit import Trainer

    train, held = _split(x)
    spec = FitSpec(data=DataSpec("array", n=N_TRAIN, seed=state)).replace(
        train={"steps": steps, "seed": state})
    trainer = Trainer(spec, Dataset("array", np.ascontiguousarray(train, dtype=np.float32),
                                    true_dim=d))
    trainer.load_state_dict(torch.load(path, weights_only=False))
    return trainer, train, held


def prior_codes(trainer, *rows: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The eigenvalues of the fit's ``A A^T`` (largest first) and the codes ``g(x)`` of each
    set of ``rows`` in its eigenbasis (float64)."""
    import torch

    model, was_training = trainer.model, trainer.model.training
    model.eval()
    with torch.no_grad():
        prior = (model.prior.A @ model.prior.A.T).double()
        eigenvalues, vectors = torch.linalg.eigh(prior)
        eigenvalues, vectors = eigenvalues.flip(0), vectors.flip(1)
        codes = [(model.encode(torch.as_tensor(r, dtype=torch.float32))[0].double() @ vectors)
                 .numpy() for r in rows]
    model.train(was_training)
    return eigenvalues.numpy(), codes


def run_case(args: tuple[str, int, int, np.ndarray, str, int]) -> dict:
    name, state, d, x, cache, steps = args
    import torch

    torch.set_num_threads(1)
    from mflow.config import DataSpec, FitSpec
    from mflow.datasets import Dataset
    from mflow.fit import Trainer
    from mflow.jacobian import jacobian_dimension, local_variances
    from mflow.local import LOCAL_RULE, local_dimension
    from mflow.readout import readout_floor

    train, held = _split(x)
    spec = FitSpec(data=DataSpec("array", n=N_TRAIN, seed=state)).replace(
        train={"steps": steps, "seed": state})
    data = Dataset("array", np.ascontiguousarray(train, dtype=np.float32), true_dim=d)
    path = Path(cache) / f"{name}-r{state}-s{steps}.pt"
    trainer = Trainer(spec, data)
    if path.exists():
        trainer.load_state_dict(torch.load(path, weights_only=False))
    else:
        trainer.run()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(trainer.state_dict(), path)
    result = trainer.result()
    variances = local_variances(
        trainer.model, torch.as_tensor(held[:JACOBIAN_POINTS], dtype=torch.float32))
    np.save(path.with_suffix(".var.npy"), variances)
    floor = readout_floor(spec)
    row = {"case": name, "state": state, "d": d, "D": x.shape[1], "rank": result.id_rank,
           "head": result.id_estimate, "local": result.local_dim, "settled": result.settled,
           "flowless": local_dimension(train, LOCAL_RULE).value}
    for t in THRESHOLDS:
        row[f"jac@{t:g}"] = jacobian_dimension(variances, floor, t).value
    for scale in SOFT_SCALES:
        row[f"soft@{scale:g}"] = soft_count(variances, floor, scale)
    row["collapsed"] = result.collapsed
    return row


def soft_count(variances: np.ndarray, floor: float, scale: float) -> float:
    """A soft count of the model's local variances ``v_i`` (``mflow.jacobian.local_variances``)
    at the blur ``scale * floor``: per point ``sum_i v_i / (v_i + scale * floor)`` (a direction
    counts fully where its variance is far above the blur, not at all far below, as in LIDL and
    FLIPD), the median over points."""
    v = np.asarray(variances, dtype=np.float64)
    return float(np.median((v / (v + scale * floor)).sum(axis=1)))


def score(rows: list[dict], column: str) -> str:
    """``exact R/N  MAE E``: the rows whose ``column`` rounds (halves up) to ``d``, and the mean
    absolute error (a missing value is a miss, left out of the error)."""
    est = np.array([np.nan if r[column] is None else r[column] for r in rows], dtype=float)
    truth = np.array([r["d"] for r in rows], dtype=float)
    right = int(np.sum(np.floor(est + 0.5) == truth))
    return f"exact {right}/{len(rows)}  MAE {np.nanmean(np.abs(est - truth)):.2f}"


def baselines(x: np.ndarray) -> dict[str, float]:
    import skdim

    train, _ = _split(x)
    return {"twonn": float(skdim.id.TwoNN().fit(train).dimension_),
            "mle": float(skdim.id.MLE().fit(train).dimension_)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, nargs="+", default=[0])
    parser.add_argument("--cases", nargs="*")
    parser.add_argument("--files", type=Path, help="a manifest of .npy cases instead")
    parser.add_argument("--cache", default="benchmarks/.cache/flow_readouts")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    jobs = []
    for state in args.replicates:
        cases = manifolds(state) if args.files is None else from_manifest(args.files)
        for name, (d, x) in cases.items():
            if not args.cases or name in args.cases:
                jobs.append((name, state, d, x, args.cache, args.steps))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(run_case, jobs))
    for row, job in zip(rows, jobs, strict=True):
        row.update(baselines(job[3]))
    cols = ["rank", "head", "flowless", "twonn", "mle", *[f"jac@{t:g}" for t in THRESHOLDS],
            *[f"soft@{s:g}" for s in SOFT_SCALES]]
    for r in rows:  # a collapsed fit has no headline: it counts as a miss, at its rank
        r["head"] = r["rank"] if r["head"] is None else r["head"]
    print("| case | d | D | " + " | ".join(cols) + " |")
    print("|---" * (3 + len(cols)) + "|")
    for r in rows:
        cells = [f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        print(f"| {r['case']} r{r['state']} | {r['d']} | {r['D']} | " + " | ".join(cells) + " |")
    print()
    for c in cols:
        print(f"{c:10s} " + score(rows, c))
    states = sorted({r["state"] for r in rows})
    if len(states) > 1:  # the benchmark's target is stated on the mean over replicates
        print(f"\nper replicate ({', '.join(f'r{s}' for s in states)}), and on the mean of each "
              "case's estimates over them:")
        for c in cols:
            per = [score([r for r in rows if r["state"] == s], c) for s in states]
            cases = sorted({r["case"] for r in rows})
            mean = [{"d": next(r["d"] for r in rows if r["case"] == case),
                     c: float(np.nanmean([np.nan if r[c] is None else r[c]
                                          for r in rows if r["case"] == case]))}
                     for case in cases]
            print(f"{c:10s} " + "; ".join(per) + f"; on the mean: {score(mean, c)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
