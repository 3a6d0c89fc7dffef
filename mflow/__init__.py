"""Intrinsic dimension with a volume-preserving flow and a learnable degenerate Gaussian prior."""

__all__ = ["FlowDimension"]


def __getattr__(name: str) -> type:
    # Imported on first use: ``import mflow.config`` (the job schema, the CLI) stays free of
    # torch and scikit-learn.
    if name == "FlowDimension":
        from mflow.estimator import FlowDimension

        return FlowDimension
    raise AttributeError(f"module 'mflow' has no attribute {name!r}")
