"""Metrics over opinion distributions."""

from demoscope.metrics.bootstrap import bootstrap_ci, grouped_bootstrap_ci, paired_bootstrap_ci
from demoscope.metrics.distances import total_variation
from demoscope.metrics.wasserstein import ordinal_wasserstein, relative_gap_reduction, uniform_baseline

__all__ = [
    "bootstrap_ci",
    "grouped_bootstrap_ci",
    "ordinal_wasserstein",
    "paired_bootstrap_ci",
    "relative_gap_reduction",
    "total_variation",
    "uniform_baseline",
]
