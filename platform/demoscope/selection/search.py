"""Subset search over sources: random-ensemble scoring and greedy forward selection (GradEx §C.1 step 6).

A subset's value is whatever the caller estimates for it (a
:class:`~demoscope.selection.first_order.FirstOrderEstimator` loss, a real
fine-tuning run, or a Ray Tune trial around either). For the random ensemble,
draw the subsets with :func:`sample_subsets`, evaluate them anywhere, and
combine with :func:`ensemble_scores`. :func:`greedy_forward_selection` asks
for a whole round of candidate subsets at once, so a caller can run each
round in parallel (the select job runs it as one Tune experiment).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from demoscope.errors import ConfigError

SubsetsEvaluator = Callable[[list[tuple]], Sequence[float]]


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


def sample_subsets(n_sources: int, n_subsets: int, subset_size: int | float = 0.5,
                   seed: int = 0) -> list[tuple[int, ...]]:
    """``n_subsets`` random subsets of ``range(n_sources)``, each ``subset_size`` distinct indices, sorted."""
    if n_subsets < 1:
        raise ConfigError(f"n_subsets must be positive, got {n_subsets}")
    k = _subset_count(n_sources, subset_size)
    rng = np.random.default_rng(seed)
    return [tuple(sorted(int(i) for i in rng.choice(n_sources, k, replace=False))) for _ in range(n_subsets)]


def ensemble_scores(sources: Sequence[Hashable], subsets: Sequence[Iterable[Hashable]],
                    values: Sequence[float]) -> dict:
    """``score_j = mean of v(S) over the subsets S that contain source j``
    (the reference's ``estimate_from_averaging``).

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


class GreedyStep(NamedTuple):
    """One round: its index (0-based), the round's best candidate and that candidate's value."""

    round: int
    added: Hashable
    value: float


@dataclass
class GreedyResult:
    """The selected sources (in the order they were added), their value, and every round's :class:`GreedyStep`.

    ``history`` holds the rounds that added a source and, when the search
    stopped before taking every source, last the round whose best candidate
    did not improve (that candidate was not added). ``best_value`` is ``inf``
    when no source was added.
    """

    selected: list
    best_value: float
    history: list[GreedyStep] = field(default_factory=list)


def greedy_forward_selection(sources: Sequence[Hashable], evaluate_subsets: SubsetsEvaluator) -> GreedyResult:
    """Forward stepwise selection of sources by a value to minimise (a loss), one batch of subsets per round.

    Round ``r`` asks ``evaluate_subsets`` once for the values of
    ``tuple(selected) + (c,)`` for every source ``c`` not yet selected, in
    the order of ``sources`` (so every subset of round ``r`` holds ``r + 1``
    sources, the selected ones first). The candidate with the lowest value
    wins the round (the first one on ties; NaN values never win). If it is
    strictly below the best value so far (``inf`` at the start) it is added
    and the next round starts; otherwise the search stops. Raises
    ``ValueError`` when the evaluator returns the wrong number of values or
    a round's values are all NaN.
    """
    sources = list(sources)
    if len(set(sources)) != len(sources):
        raise ConfigError("source names must be unique")
    selected: list = []
    best = math.inf
    history: list[GreedyStep] = []
    while len(selected) < len(sources):
        candidates = [s for s in sources if s not in selected]
        subsets = [(*selected, c) for c in candidates]
        values = [float(v) for v in evaluate_subsets(subsets)]
        if len(values) != len(subsets):
            raise ValueError(f"round {len(selected)}: {len(subsets)} subsets but {len(values)} values")
        finite = [i for i, v in enumerate(values) if not math.isnan(v)]
        if not finite:
            raise ValueError(f"round {len(selected)}: every candidate's value is NaN")
        winner = min(finite, key=lambda i: values[i])  # min keeps the first of equal values
        history.append(GreedyStep(len(selected), candidates[winner], values[winner]))
        if values[winner] >= best:  # no strict improvement: the search stops
            break
        selected, best = list(subsets[winner]), values[winner]
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
