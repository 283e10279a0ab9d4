"""Subset search over sources: random-ensemble scoring and greedy forward selection (GradEx §C.1 step 6).

Both take ``evaluate_subset(subset) -> float``, where ``subset`` is a tuple of
source names in the order the sources were given, so the caller decides what
one estimate is (a :class:`~demoscope.selection.first_order.FirstOrderEstimator`,
a real fine-tuning run, or a Ray Tune trial around either). For a parallel
random ensemble, draw the subsets with :func:`sample_subsets`, evaluate them
anywhere, and combine with :func:`ensemble_scores`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from demoscope.errors import ConfigError

SubsetEvaluator = Callable[[tuple], float]


def _subset_count(n_sources: int, subset_size: int | float) -> int:
    """An int is a count; a float in (0, 1] a fraction of the sources (the scripts' 0.5, 0.75)."""
    if isinstance(subset_size, float):
        if not 0 < subset_size <= 1:
            raise ConfigError(f"a fractional subset_size must be in (0, 1], got {subset_size}")
        k = int(subset_size * n_sources)
    else:
        k = int(subset_size)
    if not 1 <= k <= n_sources:
        raise ConfigError(f"subset size {k} is not between 1 and the {n_sources} sources")
    return k


def sample_subsets(n_sources: int, n_subsets: int, subset_size: int | float = 0.5, seed: int = 0) -> list[tuple[int, ...]]:
    """``n_subsets`` random subsets of ``range(n_sources)``, each ``subset_size`` distinct indices, sorted."""
    if n_subsets < 1:
        raise ConfigError(f"n_subsets must be positive, got {n_subsets}")
    k = _subset_count(n_sources, subset_size)
    rng = np.random.default_rng(seed)
    return [tuple(sorted(int(i) for i in rng.choice(n_sources, k, replace=False))) for _ in range(n_subsets)]


def ensemble_scores(sources: Sequence[Hashable], subsets: Sequence[Iterable[Hashable]], values: Sequence[float]) -> dict:
    """``score_j = mean of v(S) over the subsets S that contain source j`` (the reference's ``estimate_from_averaging``).

    Subsets whose value is NaN are skipped, as the reference does; a source
    in no (valid) subset scores NaN.
    """
    if len(subsets) != len(values):
        raise ValueError(f"{len(subsets)} subsets but {len(values)} values")
    index = {s: i for i, s in enumerate(sources)}
    features = np.zeros((len(subsets), len(sources)))
    for row, subset in enumerate(subsets):
        for member in subset:
            if member not in index:
                raise ConfigError(f"subset member {member!r} is not one of the sources")
            features[row, index[member]] = 1.0
    targets = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(targets)
    features, targets = features[keep], targets[keep]
    counts = features.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = (features * targets[:, None]).sum(axis=0) / counts
    return {s: float(scores[i]) for s, i in index.items()}


@dataclass
class EnsembleResult:
    """Scores per source, how many evaluated subsets contained each, and every (subset, value)."""

    scores: dict
    counts: dict
    subsets: list[tuple]
    values: list[float]

    def ranking(self, higher_is_better: bool = True) -> list:
        """Sources best first; NaN scores (never sampled) last."""
        return rank(self.scores, higher_is_better)


def random_ensemble(
    sources: Sequence[Hashable],
    evaluate_subset: SubsetEvaluator,
    n_subsets: int,
    subset_size: int | float = 0.5,
    seed: int = 0,
) -> EnsembleResult:
    """Evaluate ``n_subsets`` random subsets one after another and score every source by :func:`ensemble_scores`."""
    sources = list(sources)
    if len(set(sources)) != len(sources):
        raise ConfigError("source names must be unique")
    subsets = [tuple(sources[i] for i in idx) for idx in sample_subsets(len(sources), n_subsets, subset_size, seed)]
    values = [float(evaluate_subset(subset)) for subset in subsets]
    counts = {s: 0 for s in sources}
    for subset, value in zip(subsets, values):
        if not math.isnan(value):
            for member in subset:
                counts[member] += 1
    return EnsembleResult(ensemble_scores(sources, subsets, values), counts, subsets, values)


def rank(scores: Mapping, higher_is_better: bool = True) -> list:
    """Keys of ``scores`` best first (stable for ties); NaN last."""
    items = list(scores.items())
    finite = [(k, v) for k, v in items if not math.isnan(v)]
    missing = [k for k, v in items if math.isnan(v)]
    finite.sort(key=lambda kv: -kv[1] if higher_is_better else kv[1])
    return [k for k, _ in finite] + missing


def select_top(scores: Mapping, ratio: float, higher_is_better: bool = True) -> list:
    """The best ``int(ratio * n)`` sources (the reference keeps 70-95%), best first."""
    if not 0 < ratio <= 1:
        raise ConfigError(f"ratio must be in (0, 1], got {ratio}")
    return rank(scores, higher_is_better)[: int(ratio * len(scores))]


@dataclass
class GreedyResult:
    """The kept sources (in pass order), the best value reached, and ``(source, value, kept)`` per step."""

    selected: list
    best_value: float
    history: list[tuple] = field(default_factory=list)


def greedy_forward_selection(
    sources: Sequence[Hashable], evaluate_subset: SubsetEvaluator, higher_is_better: bool = True,
) -> GreedyResult:
    """One greedy pass in the given order: add source j, re-estimate; keep j iff the value is at least the best so far.

    As in ``fast_estimate_forward_selection.py``, ties keep the source and
    the first source is always kept (the reference starts from accuracy 0;
    we start from the worst possible value so any metric works).
    """
    selected: list = []
    best = -math.inf if higher_is_better else math.inf
    history = []
    for source in sources:
        value = float(evaluate_subset(tuple(selected + [source])))
        keep = value >= best if higher_is_better else value <= best
        if keep:
            selected.append(source)
            best = value
        history.append((source, value, keep))
    return GreedyResult(selected, best, history)


def comparison_subsets(sources: Sequence[str], selected: Sequence[str], n: int, seed: int = 0) -> dict[str, list[str]]:
    """``{"random-0": [...], ...}``: up to ``n`` distinct random subsets the size of ``selected``, none equal to it.

    What a selection is verified against. Fewer come back when fewer such
    subsets exist (e.g. 4 sources and a selection of 1 leave 3).
    """
    size = max(1, len(selected))
    if size > len(sources):
        raise ConfigError(f"a selection of {size} sources is larger than the {len(sources)} sources")
    available = math.comb(len(sources), size) - (1 if selected else 0)
    rng = np.random.default_rng(seed)
    seen, picked = {tuple(sorted(selected))}, []
    while len(picked) < min(n, available):
        subset = tuple(sorted(sources[i] for i in rng.choice(len(sources), size, replace=False)))
        if subset not in seen:
            seen.add(subset)
            picked.append(list(subset))
    return {f"random-{i}": subset for i, subset in enumerate(picked)}
