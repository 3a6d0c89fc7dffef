"""Steps to settle on images of known dimension, for variants of the training schedule.

Each case is trained once per variant, side by side in this one process (so the ratios
hold on a shared, noisy machine), with early stop on: a fit ends at its first settled point
(``mflow.settle``) or at ``--steps``. Printed per case and variant: the estimate, whether it
settled, the step it settled at, the eigenvalues around the cut and the wall time.

    python benchmarks/settling.py                       # the development cases, all variants
    python benchmarks/settling.py --cases glyph-2 --variants moment --steps 3000
    MFLOW_DATA_DIR=... python benchmarks/settling.py --cases digit-1 --variants moment
    python benchmarks/settling.py --cases glyph-3 --variants moment --classical

``--classical`` also prints TwoNN and MLE (``pipelines.analysis.baselines``, scikit-dimension's
defaults) on the same points as each case's fit.

Variants (only the fields they change; the rest is the image default, ``model.kind: conv``,
batch 128):

- ``now``: the defaults as they were (Adam on A; sigma_x x0.85 every 100 steps; learning
  rates x0.9 every 400 steps).
- ``fast``: the same with sigma_x x0.85 every 20 steps and learning rates x0.9 every 4,000.
- ``moment``: ``fast`` with the closed-form prior (A A^T set to the codes' second moment).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from mflow.config import DataSpec, FitSpec
from mflow.fit import Trainer

CASES = {
    "square": DataSpec("fading_square", n=2000),
    **{f"glyph-{k}": DataSpec("moving_glyph", n=2000, latent_dim=k) for k in range(1, 6)},
    # real MNIST digits (files from $MFLOW_DATA_DIR): no known answer, the question is whether
    # and when the spectrum settles
    **{f"digit-{c}": DataSpec("mnist", n=5000, classes=(c,)) for c in range(10)},
}
FAST = {"noise_decay_every": 20, "lr_decay_every": 4000}
VARIANTS = {
    "now": {},
    "fast": FAST,
    "moment": {**FAST, "prior_update": "moment"},
}


def spec_of(data: DataSpec, variant: str, steps: int, seed: int) -> FitSpec:
    train = {"steps": steps, "batch_size": 128, "log_every": 50, "early_stop_window": 6,
             "seed": seed, "device": "cpu", **VARIANTS[variant]}
    return FitSpec(data=data).replace(data={"seed": seed}, model={"kind": "conv"}, train=train)


def run(case: str, variant: str, steps: int, seed: int) -> str:
    spec = spec_of(CASES[case], variant, steps, seed)
    trainer = Trainer(spec)
    started = time.perf_counter()
    trajectory = []
    trainer.run(lambda p, _: trajectory.append(f"{p.step}:{p.estimate}")
                if p.step % 250 == 0 else None)
    result = trainer.result()
    k = result.id_rank or 0
    around = result.eigenvalues[max(k - 1, 0): k + 1]
    local = "-" if result.local_dim is None else f"{result.local_dim:.1f}"
    return (f"{case:9s} {variant:7s} seed {seed}: estimate {result.id_estimate} "
            f"(true {result.true_dim}; rank {result.id_rank}, local {local}), "
            f"settled {result.settled} at step {result.steps}, "
            f"drift {result.settle_drift:.2f}, margin {result.settle_margin:.2f}, "
            f"eigenvalues at the cut {[f'{v:.2g}' for v in around]}, "
            f"{time.perf_counter() - started:.0f} s | {' '.join(trajectory)}")


def classical(case: str, seed: int) -> str:
    """TwoNN and MLE on the points the case's fit trains on (images flattened)."""
    from mflow.datasets import load
    from pipelines.analysis.baselines import estimate

    data = load(dataclasses.replace(CASES[case], seed=seed))
    x = data.x.reshape(data.x.shape[0], -1).astype("float64")
    found = {name: estimate(name, x)[0] for name in ("TwoNN", "MLE")}
    return f"{case:9s} classical seed {seed}: " + ", ".join(
        f"{name} {value:.1f}" if value is not None else f"{name} -" for name, value in found.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--classical", action="store_true", help="also TwoNN and MLE")
    args = parser.parse_args()
    for case in args.cases:
        for seed in args.seeds:
            if args.classical:
                print(classical(case, seed), flush=True)
            for variant in args.variants:
                print(run(case, variant, args.steps, seed), flush=True)


if __name__ == "__main__":
    main()
