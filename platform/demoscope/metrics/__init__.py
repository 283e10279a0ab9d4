"""Metrics over opinion distributions."""

from demoscope.metrics.distances import total_variation

__all__ = ["total_variation"]
