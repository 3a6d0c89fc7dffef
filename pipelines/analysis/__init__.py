"""Analysis: the stored fits summarised per group, across noise floors (scales), beside the
classical estimators (baselines) and judged by their samples (quality).
"""
