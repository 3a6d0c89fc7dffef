"""Does "settled" hold when training goes on? scikit-dimension's manifolds trained 3x longer.

Each fit of ``benchmarks/flow_readouts.py`` (cached at ``--from-steps``, early stop off) is
continued to ``--steps`` (the learning-rate and noise schedules simply run on). For every fit:
the first logged step at which the project's settling rule (``mflow.settle``) calls the curve
settled, the headline there (``mflow.local.headline_dimension`` of that point's rank and local
dimension), the headline at the end, the rank at both, and the Jacobian readout
(``mflow.jacobian``) at the cached budget and at the end. Printed: one row per fit, the share of
settled headlines unchanged at the end (within 1 where d >= 10), the distribution of settle
steps, and how often each readout moved. Then the same curves judged by stricter variants of the
rule (``--held-for``: the headline must also have held at the noise floor for at least that
share of the steps trained so far), so that a rule can be compared without retraining.

``--fresh`` trains each fit from step 0 instead, with the 500 rows beyond the first 2,000 held
out, so that its curve logs their loss (``mflow.settle``'s rule 5); ``--heldout-drop`` judges
rule 5 at other allowances. Each rule is scored on alternate halves of the cases (a rule is
chosen on one and scored on the other). ``--rejudge FILE`` judges the rows an earlier
``--json FILE`` wrote, without training.

Run (after flow_readouts.py): python benchmarks/settled_holds.py [--steps 12000] [--workers 2]
Or: python benchmarks/settled_holds.py --fresh --json rows.json (about 35 min on 2 cores)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from flow_readouts import N_TRAIN, _split, manifolds  # benchmarks/ is the script's folder


def run_case(args: tuple[str, int, int, np.ndarray, str, int, int, bool]) -> dict:
    name, state, d, x, cache, from_steps, steps, fresh = args
    import torch

    torch.set_num_threads(1)
    from mflow.config import DataSpec, FitSpec
    from mflow.datasets import Dataset
    from mflow.fit import Trainer, fit_settling
    from mflow.jacobian import JACOBIAN_THRESHOLD, jacobian_dimension, local_variances
    from mflow.local import headline_dimension
    from mflow.readout import readout_floor

    train, held = _split(x)
    spec = FitSpec(data=DataSpec("array", n=N_TRAIN, seed=state)).replace(
        train={"steps": steps, "seed": state})
    data = Dataset("array", np.ascontiguousarray(train, dtype=np.float32), true_dim=d,
                   heldout=np.ascontiguousarray(held, dtype=np.float32) if fresh else None)
    trainer = Trainer(spec, data)
    path = Path(cache) / f"{name}-r{state}-{'h' if fresh else 's'}{steps}.pt"
    if fresh and not path.exists():  # from step 0, logging the held-out loss
        trainer.run()
        torch.save(trainer.state_dict(), path)
    if path.exists():
        done = torch.load(path, weights_only=False)
        done["specs"] = [spec.to_json()]  # cached by an earlier version of the spec's fields
        trainer.load_state_dict(done)
    else:
        start = torch.load(Path(cache) / f"{name}-r{state}-s{from_steps}.pt", weights_only=False)
        start["specs"] = [spec.to_json()]  # the same fit, a longer budget
        trainer.load_state_dict(start)
        trainer.run()
        torch.save(trainer.state_dict(), path)
    result = trainer.result()
    curve = result.curve
    first = next((i for i in range(len(curve)) if fit_settling(spec, curve[: i + 1]).settled),
                 None)

    def headline(p) -> int:
        return p.estimate if p.local_dim is None else headline_dimension(p.estimate, p.local_dim)

    floor = readout_floor(spec)
    points = torch.as_tensor(held[:200], dtype=torch.float32)
    # the Jacobian count at --from-steps, where flow_readouts.py cached its variances (a
    # --fresh run keeps no model at that step: None)
    cached = Path(cache) / f"{name}-r{state}-s{from_steps}.var.npy"
    jac_from = (jacobian_dimension(np.load(cached), floor, JACOBIAN_THRESHOLD).value
                if cached.exists() else None)
    return {
        "curve": [dataclasses.asdict(p) for p in curve],
        "case": name, "d": d, "settled_step": None if first is None else curve[first].step,
        "head_settled": None if first is None else headline(curve[first]),
        "rank_settled": None if first is None else curve[first].estimate,
        "head_end": result.id_estimate, "rank_end": result.id_rank,
        "jac_from": jac_from,
        "jac_end": jacobian_dimension(local_variances(trainer.model, points), floor,
                                      JACOBIAN_THRESHOLD).value,
        "settled_end": result.settled,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, nargs="+", default=[0])
    parser.add_argument("--cache", default="benchmarks/.cache/flow_readouts")
    parser.add_argument("--from-steps", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--held-for", type=float, nargs="*", default=[0.3, 0.5],
                        help="stricter rule variants to judge on the same curves")
    parser.add_argument("--fresh", action="store_true",
                        help="train from step 0 with the held-out rows, logging their loss")
    parser.add_argument("--heldout-drop", type=float, nargs="*", default=[],
                        help="rule variants: the held-out loss fell by at most this much "
                             "between the window's halves (needs --fresh curves)")
    parser.add_argument("--margin", type=float, nargs="*", default=[],
                        help="rule variants: rules 1-5 with rule 3's margin at this factor "
                             "(the product's is mflow.settle.SETTLE_MARGIN)")
    parser.add_argument("--json", help="write the rows (curves included) here")
    parser.add_argument("--rejudge", help="judge the rows an earlier --json wrote; no training")
    args = parser.parse_args()
    if args.rejudge:
        rows = json.loads(Path(args.rejudge).read_text())
    else:
        jobs = [(name, s, d, x, args.cache, args.from_steps, args.steps, args.fresh)
                for s in args.replicates for name, (d, x) in manifolds(s).items()]
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with ProcessPoolExecutor(args.workers) as pool:
            rows = list(pool.map(run_case, jobs))
    print("| case | d | settled at | headline then | at end | rank then | at end | "
          f"jacobian at {args.from_steps} | at end |")
    print("|---" * 9 + "|")
    for r in rows:
        print(f"| {r['case']} | {r['d']} | {r['settled_step']} | {r['head_settled']} | "
              f"{r['head_end']} | {r['rank_settled']} | {r['rank_end']} | "
              f"{'-' if r['jac_from'] is None else format(r['jac_from'], 'g')} | "
              f"{r['jac_end']:g} |")
    settled = [r for r in rows if r["settled_step"] is not None]
    held = [r for r in settled
            if abs(r["head_settled"] - r["head_end"]) <= (1 if r["d"] >= 10 else 0)]
    steps = sorted(r["settled_step"] for r in settled)
    print(f"\nsettled: {len(settled)}/{len(rows)}; headline held to {args.steps}: "
          f"{len(held)}/{len(settled)}; settle steps: {steps}")
    for a, b in (("rank_settled", "rank_end"), ("jac_from", "jac_end")):
        known = [r for r in settled if r[a] is not None]
        if known:
            moved = sum(r[a] != r[b] for r in known)
            print(f"{a} -> {b}: moved in {moved}/{len(known)}")
    _compare_rule(rows, "rules 1-4 alone (no held-out loss)", args.steps,
                  lambda curve, i, j: True)
    for share in args.held_for:
        _compare_rule(rows, f"rules 1-4, the headline held at the floor for >= {share:.0%} of "
                      "the steps", args.steps,
                      lambda curve, i, j, share=share: j.stable_steps >= share * curve[i].step)
    for drop in args.heldout_drop:
        _compare_rule(rows, f"rules 1-4, the held-out loss fell by <= {drop:g} (rule 5)",
                      args.steps, lambda curve, i, j, drop=drop: _fall(curve, i) <= drop)
    for margin in args.margin:
        _compare_rule(rows, f"rules 1-5, rule 3's margin {margin:g}", args.steps,
                      lambda curve, i, j: True, margin=margin, heldout=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))


def _fall(curve: list, i: int) -> float:
    """``mflow.settle.heldout_fall`` over the settle window ending at point ``i``; inf where a
    point of it has no held-out loss (curves of fits without held-out points)."""
    from mflow.config import DataSpec, FitSpec
    from mflow.settle import heldout_fall, settle_settings

    window = settle_settings(FitSpec(data=DataSpec("array", n=N_TRAIN)))[0]
    fall = heldout_fall(curve[max(0, i - window) : i + 1])
    return float("inf") if np.isnan(fall) else fall


def _compare_rule(rows: list[dict], name: str, steps: int, extra, margin: float | None = None,
                  heldout: bool = False) -> None:
    """Rules 1-4 of ``mflow.settle`` with one more condition ``extra(curve, i, settling)``,
    judged on every prefix ``curve[: i + 1]`` of each stored curve (the held-out loss left
    out, so that rule 5 applies only where ``extra`` asks for it, or ``heldout`` keeps it);
    the first prefix that passes both stops. ``margin`` replaces rule 3's factor."""
    from mflow.config import DataSpec, FitSpec
    from mflow.fit import CurvePoint
    from mflow.outcome import fit_settling
    from mflow.settle import estimate_at

    spec = FitSpec(data=DataSpec("array", n=N_TRAIN)).replace(
        readout={"settle_margin": margin})
    # per half of the cases (alternate rows): a rule is chosen on one and scored on the other
    settled, held, at = [0, 0], [0, 0], []
    for index, r in enumerate(rows):
        curve = [CurvePoint(**p) for p in r["curve"]]
        bare = curve if heldout else [dataclasses.replace(p, heldout_loss=None) for p in curve]
        first = next((i for i in range(len(curve))
                      if (j := fit_settling(spec, bare[: i + 1])).settled
                      and extra(curve, i, j)), None)
        if first is None:
            continue
        settled[index % 2] += 1
        at.append(curve[first].step)
        held[index % 2] += abs(estimate_at(curve[first]) - estimate_at(curve[-1])) <= (
            1 if r["d"] >= 10 else 0)
    print(f"{name}: settled {sum(settled)}/{len(rows)}; headline held to {steps}: "
          f"{sum(held)}/{sum(settled)} (even cases {held[0]}/{settled[0]}, odd {held[1]}/"
          f"{settled[1]}); settle steps: {sorted(at)}")


if __name__ == "__main__":
    main()
