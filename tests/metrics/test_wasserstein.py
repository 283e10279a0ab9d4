"""Ordinal Wasserstein metric (SubPOP §4.2) against verified values and scipy."""

import math

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from demoscope.metrics import ordinal_wasserstein, relative_gap_reduction, uniform_baseline


def test_non_integer_positions_give_the_verified_value():
    assert ordinal_wasserstein([0.1, 0.5, 0.4], [0.2, 0.3, 0.5], [1, 2, 1.5]) == pytest.approx(0.15)


def test_negative_ordinal_is_dropped_then_both_sides_renormalised():
    # 0.142857 (= 1/7), not the 0.1 one gets without renormalising.
    got = ordinal_wasserstein([0.2, 0.5, 0.3], [0.3, 0.4, 0.3], [1, 2, -1])
    assert got == pytest.approx(1 / 7)


def test_all_equal_ordinals_give_nan():
    assert math.isnan(ordinal_wasserstein([0.5, 0.5], [0.1, 0.9], [1, 1]))


def test_one_position_left_after_dropping_negatives_gives_nan():
    assert math.isnan(ordinal_wasserstein([0.3, 0.3, 0.4], [0.1, 0.2, 0.7], [1, 1, -1]))


def test_side_without_kept_mass_becomes_uniform():
    # Model puts everything on the dropped option: it counts as uniform on {1, 2, 3}.
    got = ordinal_wasserstein([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1, 2, 3, -1])
    assert got == pytest.approx((2 / 3 * 1 + 1 / 3 * 1) / 2)


def test_opposite_extremes_give_one_and_identical_give_zero():
    assert ordinal_wasserstein([1, 0, 0], [0, 0, 1], [1, 2, 3]) == pytest.approx(1.0)
    assert ordinal_wasserstein([0.2, 0.3, 0.5], [0.2, 0.3, 0.5], [1, 2, 3]) == pytest.approx(0.0)


def test_length_mismatch_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match="truncate to len"):
        ordinal_wasserstein([0.2, 0.3, 0.4, 0.1], [0.25] * 4, [1, 2, 3])


def test_matches_scipy_on_random_inputs():
    rng = np.random.default_rng(1234)
    for _ in range(200):
        k = int(rng.integers(2, 11))
        ordinal = rng.choice([-1.0, 1.0, 1.5, 2.0, 3.0, 4.0, 5.5], size=k)
        kept = ordinal[ordinal >= 0]
        if np.unique(kept).size < 2:
            continue
        human, model = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k))
        h, m = human[ordinal >= 0], model[ordinal >= 0]
        want = wasserstein_distance(kept, kept, h / h.sum(), m / m.sum()) / (kept.max() - kept.min())
        assert ordinal_wasserstein(human, model, ordinal) == pytest.approx(want, abs=1e-12)


def test_uniform_baseline_spreads_over_non_negative_ordinals():
    np.testing.assert_allclose(uniform_baseline([1, 2, 3, -1]), [1 / 3, 1 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(uniform_baseline([1, 1.5, 2]), [1 / 3] * 3)
    with pytest.raises(ValueError):
        uniform_baseline([-1, -1])


def test_relative_gap_reduction_reproduces_the_headline_arithmetic():
    assert relative_gap_reduction(0.206, 0.121) == pytest.approx(0.41262, abs=1e-5)
    assert relative_gap_reduction(0.2, 0.3) == pytest.approx(-0.5)
    with pytest.raises(ValueError):
        relative_gap_reduction(0.0, 0.1)
