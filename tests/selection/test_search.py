"""Random-ensemble scoring and greedy forward selection on synthetic subset values with known best sources."""

import math
import zlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demoscope.errors import ConfigError
from demoscope.selection.search import (
    GreedyStep,
    comparison_subsets,
    ensemble_scores,
    greedy_forward_selection,
    sample_subsets,
)

# Ten sources with known quality; the best three are g7, g2, g5.
QUALITY = {"g0": 0.1, "g1": 0.3, "g2": 0.9, "g3": -0.4, "g4": 0.2, "g5": 0.7, "g6": 0.35, "g7": 1.0, "g8": 0.15,
           "g9": 0.25}


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
    scores = ensemble_scores(["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("a",), ("a", "c")],
                             [1.0, 3.0, 2.0, float("nan")])
    # The NaN subset is skipped; d is never sampled.
    assert scores["a"] == pytest.approx(1.5) and scores["b"] == pytest.approx(2.0) and scores["c"] == pytest.approx(3.0)
    assert math.isnan(scores["d"])
    with pytest.raises(ConfigError):
        ensemble_scores(["a"], [("z",)], [1.0])


def test_random_ensemble_scores_rank_the_known_best_sources_first():
    """The select job's ensemble: sampled index subsets as names, a value each, then :func:`ensemble_scores`."""
    sources = list(QUALITY)
    subsets = [[sources[i] for i in s] for s in sample_subsets(len(sources), 300, 0.5, seed=0)]
    scores = ensemble_scores(sources, subsets, [noisy_mean_quality(s) for s in subsets])
    best_first = sorted(sources, key=lambda s: -scores[s])
    assert set(best_first[:2]) == {"g7", "g2"} and best_first[2] == "g5" and best_first[-1] == "g3"
    # Scores follow the qualities overall.
    assert np.corrcoef([QUALITY[s] for s in sources], [scores[s] for s in sources])[0, 1] > 0.95


def recording(value):
    """A batched evaluator from a one-subset ``value``, and the list of batches it was called with."""
    calls = []

    def evaluate(subsets):
        calls.append(list(subsets))
        return [value(s) for s in subsets]

    return evaluate, calls


def test_greedy_adds_the_best_candidate_per_round_until_none_lowers_the_loss():
    loss = {"a": 3.0, "b": 1.0, "c": 2.0, "d": 5.0}
    # A subset's loss: its members' mean, less a bonus when a and c are together.
    evaluate, calls = recording(lambda s: float(np.mean([loss[x] for x in s])) - (2.5 if {"a", "c"} <= set(s) else 0))
    result = greedy_forward_selection(list(loss), evaluate)
    # Round 0: b (1.0) wins. Round 1: b+c (1.5) beats b+a (2.0) and b+d (3.0) but not 1.0: stop, c not added.
    assert result.selected == ["b"] and result.best_value == 1.0
    assert result.history == [GreedyStep(0, "b", 1.0), GreedyStep(1, "c", 1.5)]
    # One call per round: every remaining source appended to the selection, in the given order.
    assert calls == [[("a",), ("b",), ("c",), ("d",)], [("b", "a"), ("b", "c"), ("b", "d")]]


def test_greedy_takes_every_source_while_each_lowers_the_loss_and_a_tie_stops_it():
    evaluate, calls = recording(lambda s: 10.0 - len(s) - 0.5 * ("z" in s))
    result = greedy_forward_selection(["y", "z", "x"], evaluate)
    assert result.selected == ["z", "y", "x"] and result.best_value == 6.5
    assert [step.round for step in result.history] == [0, 1, 2] and len(calls) == 3  # no round after the last source
    # A round whose best only equals the best so far stops the search; of equal candidates the first wins.
    result = greedy_forward_selection(["a", "b", "c"], lambda subsets: [1.0] * len(subsets))
    assert result.selected == ["a"] and result.history == [GreedyStep(0, "a", 1.0), GreedyStep(1, "b", 1.0)]


def test_greedy_skips_nan_candidates_and_refuses_a_round_of_only_nan_or_a_short_answer():
    nan = float("nan")
    result = greedy_forward_selection(["a", "b"], lambda subsets: [nan, 2.0] if len(subsets) == 2 else [1.0])
    assert result.selected == ["b", "a"] and result.history[0] == GreedyStep(0, "b", 2.0)
    with pytest.raises(ValueError, match="round 0: every candidate's value is NaN"):
        greedy_forward_selection(["a", "b"], lambda subsets: [nan] * len(subsets))
    with pytest.raises(ValueError, match="round 0: 2 subsets but 1 values"):
        greedy_forward_selection(["a", "b"], lambda subsets: [1.0])
    with pytest.raises(ConfigError, match="unique"):
        greedy_forward_selection(["a", "a"], lambda subsets: [1.0] * len(subsets))
    assert greedy_forward_selection([], lambda subsets: []).selected == []


def plain_greedy(sources, value):
    """The select job's own loop before it moved to the library: a frame per round, ``idxmin``, stop unless lower."""
    selected, best, history = [], float("inf"), []
    while len(selected) < len(sources):
        candidates = [s for s in sources if s not in selected]
        subsets = [selected + [c] for c in candidates]
        round_trials = pd.DataFrame({"subset": subsets, "estimated_loss": [value(tuple(s)) for s in subsets]})
        winner = round_trials.loc[round_trials.estimated_loss.idxmin()]
        history.append((len(selected), winner.subset[-1], winner.estimated_loss))
        if winner.estimated_loss >= best:
            break
        selected, best = list(winner.subset), float(winner.estimated_loss)
    return selected, best, history


VALUES = [0.0, 1.0, 1.5, 2.0, 3.0, float("nan"), float("inf")]  # few values: many ties


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 6), data=st.data())
def test_greedy_matches_the_plain_loop_it_replaces(n, data):
    """A value per set of sources (the job's estimate cache keys subsets as sets), drawn as the search asks."""
    sources = [f"s{i}" for i in range(n)]
    drawn = {}

    def value(subset):
        key = frozenset(subset)
        if key not in drawn:
            drawn[key] = data.draw(st.sampled_from(VALUES), label=",".join(sorted(key)))
        return drawn[key]

    evaluate, calls = recording(value)
    try:
        expected = plain_greedy(sources, value)
    except ValueError:  # a round of only NaN: idxmin refuses it, and so does the library
        with pytest.raises(ValueError, match="NaN"):
            greedy_forward_selection(sources, evaluate)
        return
    result = greedy_forward_selection(sources, evaluate)
    assert (result.selected, result.best_value, [tuple(step) for step in result.history]) == expected
    assert len(calls) == len(result.history)
    for step, call in zip(result.history, calls):
        chosen = result.selected[: step.round]
        assert call == [(*chosen, c) for c in sources if c not in chosen]


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
