"""Surveys: read microdata, find weights, questions and groups, aggregate distributions."""

from demoscope.surveys.aggregate import (
    AggregateInputs,
    CountAccumulator,
    FilePartial,
    finalize,
    reduce_file,
)
from demoscope.surveys.metadata import Subpopulation, load_codebook, load_subpopulations
from demoscope.surveys.output import read_distributions, write_distributions
from demoscope.surveys.plan import Issue
from demoscope.surveys.spec import SurveySpec, load_spec


def aggregate_files(paths, inputs: AggregateInputs):
    """Aggregate files in this process (no Ray): returns ``(distributions, accumulator)``."""
    acc = CountAccumulator()
    for path in paths:
        acc.add(reduce_file(path, inputs))
    frame, issues = finalize(acc.counts(), acc.questions(), inputs.subpopulations)
    acc.issues.extend(issues)
    return frame, acc


__all__ = [
    "AggregateInputs", "CountAccumulator", "FilePartial", "Issue", "Subpopulation", "SurveySpec",
    "aggregate_files", "finalize", "load_codebook", "load_spec", "load_subpopulations",
    "read_distributions", "reduce_file", "write_distributions",
]
