"""Source selection by first-order estimates of fine-tuning (GradEx,
``reference/politune-w2s-gradex-distillation.md`` §C).

Modules, one job each: :mod:`.gradients` (per-sample outputs and gradients
at a meta-trained LoRA adapter), :mod:`.projection` (seeded blockwise
Rademacher projection), :mod:`.first_order` (the logistic-regression
estimate of fine-tuning on a subset, and its error check), :mod:`.search`
(random-ensemble scores, greedy forward selection), :mod:`.storage`
(projected-gradient shards on disk) and :mod:`.toy` (the noisy-addition toy).
No Ray here: the Ray Data / Ray Tune layers call these functions.
"""

from demoscope.selection.first_order import (
    ApproximationError,
    FirstOrderEstimator,
    FirstOrderSettings,
    SubsetDelta,
    approximation_error,
    check_first_order,
    fit_logistic,
    solve_delta,
)
from demoscope.selection.gradients import (
    clamped_log_odds,
    gradient_dim,
    gradient_parameter_names,
    per_sample_gradients,
    per_sample_gradients_loop,
    projected_gradients,
)
from demoscope.selection.projection import RademacherProjection
from demoscope.selection.search import (
    comparison_subsets,
    ensemble_scores,
    greedy_forward_selection,
    sample_subsets,
)

__all__ = [
    "ApproximationError", "FirstOrderEstimator", "FirstOrderSettings", "RademacherProjection", "SubsetDelta",
    "approximation_error", "check_first_order", "clamped_log_odds", "comparison_subsets", "ensemble_scores",
    "fit_logistic", "gradient_dim", "gradient_parameter_names", "greedy_forward_selection", "per_sample_gradients",
    "per_sample_gradients_loop", "projected_gradients", "sample_subsets", "solve_delta",
]
