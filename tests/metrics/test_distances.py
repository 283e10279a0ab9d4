"""TV, Jensen-Shannon and KL against hand-computed values and plain references; the batched forms equal them."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from demoscope.metrics.distances import KL_SMOOTHING, jensen_shannon, kl_divergence, total_variation, uniform
from demoscope.metrics.noise_floor import distances_to
from demoscope.metrics.wasserstein import ordinal_wasserstein


def test_hand_computed_values():
    p, q = [0.5, 0.5, 0.0], [0.25, 0.25, 0.5]
    assert total_variation(p, q) == pytest.approx(0.5)
    # JS divergence in bits: M = (0.375, 0.375, 0.25); KL(p||M) = log2(4/3); KL(q||M) = 0.5 log2(2/3) + 0.5 log2(2)
    divergence = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5 * 1.0)
    assert jensen_shannon(p, q) == pytest.approx(math.sqrt(divergence))
    # KL(p || q) in nats, q smoothed by 1e-6: 2 * 0.5 * ln(0.5 / 0.25) up to the smoothing
    assert kl_divergence(p, q) == pytest.approx(math.log(2), rel=1e-5)
    assert kl_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(math.log((1 + 2 * KL_SMOOTHING) / KL_SMOOTHING))
    assert total_variation([1, 0], [0, 1]) == 1.0 and jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    assert total_variation([2, 2], [1, 1]) == 0.0  # each side is normalised first, as SimBench does
    assert uniform(4).tolist() == [0.25] * 4
    with pytest.raises(ValueError, match="differ in length"):
        total_variation([1.0], [0.5, 0.5])


def distribution(size: int):
    return st.lists(st.floats(0, 1), min_size=size, max_size=size).filter(lambda v: sum(v) > 1e-3)


@st.composite
def rows(draw):
    k = draw(st.integers(2, 6))
    human = draw(st.lists(distribution(k), min_size=1, max_size=4))
    model = draw(distribution(k))
    ordinal = draw(st.lists(st.sampled_from([-1.0, 1.0, 2.0, 3.0, 4.0]), min_size=k, max_size=k))
    return np.array(human), np.array(model), ordinal


@given(rows())
def test_plain_references_and_the_batched_forms_agree(case):
    humans, model, ordinal = case
    for human in humans:
        p, q = human / human.sum(), model / model.sum()
        assert total_variation(human, model) == pytest.approx(sum(abs(a - b) for a, b in zip(p, q)) / 2, abs=1e-12)
        m = (p + q) / 2

        def kl2(a, b):
            return sum(x * math.log2(x / y) for x, y in zip(a, b) if x > 0)

        assert jensen_shannon(human, model) == pytest.approx(math.sqrt(max(0.5 * kl2(p, m) + 0.5 * kl2(q, m), 0)),
                                                             abs=1e-7)
        smoothed = [(x + KL_SMOOTHING) / (1 + len(q) * KL_SMOOTHING) for x in q]
        assert kl_divergence(human, model) == pytest.approx(
            sum(x * math.log(x / y) for x, y in zip(p, smoothed) if x > 0), rel=1e-9, abs=1e-12)
    scalar = {"tv": lambda h: total_variation(h, model), "js": lambda h: jensen_shannon(h, model),
              "kl": lambda h: kl_divergence(h, model), "wd": lambda h: ordinal_wasserstein(h, model, ordinal)}
    for metric, one in scalar.items():
        expected = np.array([one(h) for h in humans])
        np.testing.assert_allclose(distances_to(humans, model, ordinal, metric), expected, atol=1e-12, equal_nan=True)
