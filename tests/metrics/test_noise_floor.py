"""The noise floor: a survey of n people is this far from its population, on average; checked where it is known."""

import numpy as np
import pandas as pd
import pytest

from demoscope.metrics.noise_floor import answered_sizes, expected_sampling_distance, noise_floors


def test_tv_floor_of_a_fair_coin_matches_the_binomial_formula():
    # TV between Binomial(n, 1/2)/n and (1/2, 1/2) is |X/n - 1/2|; its mean is known exactly.
    n = 40
    k = np.arange(n + 1)
    from scipy.stats import binom

    exact = float((binom.pmf(k, n, 0.5) * np.abs(k / n - 0.5)).sum())
    got = expected_sampling_distance([0.5, 0.5], n, [1, 2], "tv", draws=20000, rng=np.random.default_rng(0))
    assert got == pytest.approx(exact, rel=0.02)


def test_floor_shrinks_like_one_over_root_n_and_is_zero_for_a_certain_answer():
    rng = np.random.default_rng(1)
    small = expected_sampling_distance([0.2, 0.3, 0.5], 100, [1, 2, 3], "wd", 4000, rng)
    large = expected_sampling_distance([0.2, 0.3, 0.5], 1600, [1, 2, 3], "wd", 4000, rng)
    assert large / small == pytest.approx(0.25, rel=0.1)  # sqrt(100 / 1600)
    assert expected_sampling_distance([1.0, 0.0], 50, [1, 2], "tv", 100, rng) == 0.0
    assert np.isnan(expected_sampling_distance([0.5, 0.5], 0.4, [1, 2], "tv", 100, rng))  # under one respondent


def test_floors_are_seeded_per_row_not_by_position():
    humans, sizes, ordinals = [[0.3, 0.7], [0.6, 0.4]], [50.0, np.nan], [[1, 2], [1, 2]]
    keys = [("q1", "PARTY", "A"), ("q1", "PARTY", "B")]
    first = noise_floors(humans, sizes, ordinals, keys, "tv", draws=50, seed=3)
    reversed_ = noise_floors(humans[::-1], sizes[::-1], ordinals[::-1], keys[::-1], "tv", draws=50, seed=3)
    assert first[0] == reversed_[1] and np.isnan(first[1])  # unknown n: no floor
    assert first[0] != noise_floors(humans, sizes, ordinals, keys, "tv", draws=50, seed=4)[0]


def test_answered_sizes_leave_out_the_refusals():
    frame = pd.DataFrame({"output_dist": [[0.5, 0.3, 0.2], [0.6, 0.4, 0.0]], "n_eff": [100.0, 50.0]})
    np.testing.assert_allclose(answered_sizes(frame), [80.0, 50.0])
    assert np.isnan(answered_sizes(frame.drop(columns="n_eff"))).all()
