"""The columns of ``summary.parquet``, one row per group: their types and what each holds
(``pipelines.analysis.summary`` fills them)."""

from __future__ import annotations

import pyarrow as pa

from pipelines.analysis.scales import SCALE_COLUMNS

__all__ = ["SUMMARY_SCHEMA"]

_FLOATS = pa.list_(pa.float64())
SUMMARY_SCHEMA = pa.schema(
    [
        ("survey", pa.string()),
        ("group", pa.string()),  # "axis=value ...": the grid position without the seed
        ("group_id", pa.string()),  # filename-safe id of the group (baselines/<group_id>.parquet)
        ("axes", pa.string()),  # JSON: grouping axis -> value
        ("dataset", pa.string()),  # the following four: null when they vary within the group
        ("subset", pa.int64()),
        ("class", pa.int64()),
        ("noise_floor", pa.float64()),
        ("true_dim", pa.int64()),
        ("ambient_dim", pa.int64()),
        ("n", pa.int64()),  # training points per fit (median)
        ("fits", pa.int64()),
        ("ok", pa.int64()),
        ("diverged", pa.int64()),
        ("failed", pa.int64()),
        ("seeds", pa.list_(pa.int64())),
        ("estimates", pa.list_(pa.int64())),  # per fit, seed order; null when not ok
        ("estimate", pa.float64()),  # median over ok fits
        ("estimate_min", pa.int64()),
        ("estimate_max", pa.int64()),
        ("answer", pa.float64()),  # estimate when the group settled, else null
        ("settled", pa.bool_()),  # every ok fit settled; null: not judged (see above)
        ("settled_fits", pa.int64()),  # ok fits that settled
        ("settled_per_fit", pa.list_(pa.bool_())),  # seed order; null when not ok or not judged
        ("rank", pa.float64()),  # median rank of A A^T over ok fits (null: not recorded)
        ("local_dim", pa.float64()),  # median local dimension of the codes (mflow.local)
        ("local_dim_spread", pa.float64()),  # median of its spread over points
        ("curved", pa.bool_()),  # estimate < rank: locally fewer dimensions than flat ones
        ("jacobian_dim", pa.float64()),  # median of the fits' Jacobian readout (mflow.jacobian)
        ("flowless_dim", pa.float64()),  # median of the ablation: the local rule, no flow
        ("collapsed", pa.int64()),  # fits whose spectrum collapsed (no estimate)
        ("older_readout", pa.int64()),  # fits read by another readout than the current one
        ("rule", pa.string()),  # the readout rule of the estimates ("mixed" if several)
        ("threshold", pa.float64()),  # threshold rule's factor; null for gap
        ("floor", pa.float64()),  # sigma2 + noise_floor**2 (median over the group's fits)
        ("sigma2", pa.float64()),  # the prior's spread noise variance
        ("gap", pa.float64()),  # median over ok fits of the log-gap at each fit's cut
        ("log_volume", pa.float64()),  # median over ok fits of log det(A A^T + sigma2 I)
        ("log_volumes", _FLOATS),  # per fit, seed order; null when not ok
        *SCALE_COLUMNS.items(),  # the scale readout of the family (analysis.scales)
        ("eig_median", _FLOATS),  # per rank, over ok fits
        ("eig_q10", _FLOATS),
        ("eig_q90", _FLOATS),
        ("steps", pa.int64()),  # median over ok fits
        ("wall_s", pa.float64()),  # median training time of a fit
        ("fit_ids", pa.list_(pa.string())),  # seed order
    ]
)
