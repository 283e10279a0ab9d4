"""Random-ensemble scoring and greedy forward selection on synthetic subset values with known best sources."""

import math
import zlib

import numpy as np
import pytest

from demoscope.errors import ConfigError
from demoscope.selection.search import (
    comparison_subsets,
    ensemble_scores,
    greedy_forward_selection,
    random_ensemble,
    rank,
    sample_subsets,
    select_top,
)

# Ten sources with known quality; the best three are g7, g2, g5.
QUALITY = {"g0": 0.1, "g1": 0.3, "g2": 0.9, "g3": -0.4, "g4": 0.2, "g5": 0.7, "g6": 0.35, "g7": 1.0, "g8": 0.15, "g9": 0.25}


def noisy_mean_quality(subset):
    """A subset's value: mean member quality plus deterministic per-subset noise."""
    noise = np.random.default_rng(zlib.crc32(",".join(sorted(subset)).encode())).normal(0, 0.05)
    return float(np.mean([QUALITY[s] for s in subset]) + noise)


def test_sample_subsets_sizes_and_determinism():
    subsets = sample_subsets(20, 50, 7, seed=3)
    assert len(subsets) == 50 and all(len(s) == len(set(s)) == 7 for s in subsets)
    assert all(list(s) == sorted(s) and 0 <= s[0] and s[-1] < 20 for s in subsets)
    assert subsets == sample_subsets(20, 50, 7, seed=3) and subsets != sample_subsets(20, 50, 7, seed=4)
    assert {len(s) for s in sample_subsets(10, 5, 0.5)} == {5}
    with pytest.raises(ConfigError):
        sample_subsets(5, 3, 6)


def test_ensemble_scores_by_hand():
    scores = ensemble_scores(["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("a",), ("a", "c")], [1.0, 3.0, 2.0, float("nan")])
    # The NaN subset is skipped; d is never sampled.
    assert scores["a"] == pytest.approx(1.5) and scores["b"] == pytest.approx(2.0) and scores["c"] == pytest.approx(3.0)
    assert math.isnan(scores["d"])
    with pytest.raises(ConfigError):
        ensemble_scores(["a"], [("z",)], [1.0])


def test_random_ensemble_ranks_the_known_best_sources_first():
    calls = []

    def evaluate(subset):
        calls.append(subset)
        return noisy_mean_quality(subset)

    result = random_ensemble(list(QUALITY), evaluate, n_subsets=300, subset_size=0.5, seed=0)
    assert len(calls) == 300 and all(isinstance(s, tuple) and len(s) == 5 for s in calls)
    assert sum(result.counts.values()) == 300 * 5
    assert set(select_top(result.scores, 0.3)) == {"g7", "g2", "g5"}
    assert set(result.ranking()[:2]) == {"g7", "g2"} and result.ranking()[2] == "g5"
    assert result.ranking()[-1] == "g3"
    # Scores follow the qualities overall.
    sources = list(QUALITY)
    assert np.corrcoef([QUALITY[s] for s in sources], [result.scores[s] for s in sources])[0, 1] > 0.95
    # A loss-like value (lower is better) ranks in reverse.
    losses = random_ensemble(list(QUALITY), lambda s: -noisy_mean_quality(s), 300, 0.5, seed=0)
    assert losses.ranking(higher_is_better=False) == result.ranking()


def test_rank_and_select_top_put_unsampled_sources_last():
    scores = {"a": 1.0, "b": float("nan"), "c": 3.0}
    assert rank(scores) == ["c", "a", "b"] and rank(scores, higher_is_better=False) == ["a", "c", "b"]
    assert select_top(scores, 0.7) == ["c", "a"][: int(0.7 * 3)]


def test_greedy_forward_pass_keeps_sources_that_do_not_lower_the_value():
    values = []

    def evaluate(subset):
        value = float(np.mean([QUALITY[s] for s in subset]))
        values.append((subset, value))
        return value

    order = ["g1", "g3", "g2", "g6", "g7", "g5", "g0"]
    result = greedy_forward_selection(order, evaluate)
    # g1 (0.3) kept; g3 drops the mean; g2 raises it (0.6); g6 lowers it; g7 raises it (0.733); g5 (0.7) lowers; g0 lowers.
    assert result.selected == ["g1", "g2", "g7"]
    assert result.best_value == pytest.approx((0.3 + 0.9 + 1.0) / 3)
    assert [kept for _, _, kept in result.history] == [True, False, True, False, True, False, False]
    assert [s for s, _ in values][1] == ("g1", "g3")  # each candidate is evaluated with the kept ones


def test_greedy_with_a_loss_and_ties():
    losses = {"a": 1.0, "b": 1.0, "c": 2.0}
    result = greedy_forward_selection(list(losses), lambda s: max(losses[x] for x in s), higher_is_better=False)
    assert result.selected == ["a", "b"]  # a tie keeps the source, as the reference's >= does
    assert result.best_value == 1.0


def test_comparison_subsets_are_distinct_the_selections_size_and_not_the_selection():
    sources = ["a", "b", "c", "d", "e"]
    checks = comparison_subsets(sources, ["b", "d"], 4, seed=3)
    assert list(checks) == ["random-0", "random-1", "random-2", "random-3"]
    subsets = [tuple(s) for s in checks.values()]
    assert len(set(subsets)) == 4 and ("b", "d") not in subsets and all(len(s) == 2 for s in subsets)
    assert checks == comparison_subsets(sources, ["d", "b"], 4, seed=3)  # seeded, selection order free


def test_comparison_subsets_stop_when_no_other_subset_exists():
    assert sorted(map(tuple, comparison_subsets(["a", "b", "c", "d"], ["a"], 5).values())) == [("b",), ("c",), ("d",)]
    assert comparison_subsets(["a", "b"], ["a", "b"], 2) == {}


def test_rank_agreement_is_spearmans_rho_and_nan_below_three_subsets():
    import pandas as pd

    from demoscope.selection.report import rank_agreement

    frame = pd.DataFrame({"estimated_loss": [1.0, 2.0, 3.0, 4.0], "real_loss": [10.0, 30.0, 20.0, 40.0]})
    assert rank_agreement(frame) == pytest.approx(0.8)  # one swapped pair of four: 1 - 6*2/(4*15)
    assert math.isnan(rank_agreement(frame.head(2)))
