"""Options shown in other orders: the prompt's MCQ is reordered and the answers map back to the original options."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from demoscope.errors import SurveyFormatError
from demoscope.surveys.option_orders import option_orders, reorder_options, restore_order
from demoscope.surveys.prompts import render_prompt

OPTIONS = ["Very likely", "Somewhat likely", "Not too likely", "Refused"]


def prompt():
    return render_prompt("QA", "POLPARTY", "Democrat", "How likely is it?", OPTIONS)


def test_orders_are_identity_reversed_then_shifts_and_distinct():
    assert option_orders(3, 5) == [(0, 1, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)]
    assert option_orders(2, 4) == [(0, 1), (1, 0)]


def test_the_mcq_lists_the_scored_options_in_the_order_and_keeps_the_rest():
    shown = reorder_options(prompt(), (2, 1, 0))
    assert "A. Not too likely\nB. Somewhat likely\nC. Very likely\nD. Refused" in shown
    steering = prompt()[: prompt().rfind("Question:")]
    assert shown.startswith(steering)  # the steering prefix (with its own lettered options) is untouched
    assert reorder_options(prompt(), (0, 1, 2)) == prompt()
    with pytest.raises(SurveyFormatError, match="lists 4 lettered options"):
        reorder_options(prompt(), tuple(range(5)))


@given(st.permutations(range(3)), st.lists(st.floats(0, 1), min_size=3, max_size=3))
def test_restoring_inverts_the_order(order, original):
    shown = [original[i] for i in order]  # what a model answering the same way would put on each shown letter
    np.testing.assert_allclose(restore_order(shown, order), original)


class PositionBiased:
    """A scorer that always puts 0.7 on the first shown letter: answers that follow the order, not the options."""

    def score(self, prompts, n_options):
        return [np.array([0.7] + [0.3 / (n - 1)] * (n - 1)) for n in n_options]


class Faithful:
    """A scorer that answers by the options themselves, wherever they are shown."""

    weights = {"Very likely": 0.6, "Somewhat likely": 0.3, "Not too likely": 0.1}

    def score(self, prompts, n_options):
        out = []
        for p in prompts:
            block = p[p.rfind("Question:"):]
            shown = [line[3:] for line in block.split("\n") if line[:3] in ("A. ", "B. ", "C. ")]
            out.append(np.array([self.weights[t] for t in shown]))
        return out


def test_order_averaging_exposes_position_bias_and_leaves_faithful_answers_alone():
    from demoscope.surveys.option_orders import score_in_orders

    averaged, spread = score_in_orders(Faithful(), [prompt()], [3], k=3)
    np.testing.assert_allclose(averaged[0], [0.6, 0.3, 0.1]) and np.testing.assert_allclose(spread, [0.0])
    averaged, spread = score_in_orders(PositionBiased(), [prompt()], [3], k=3)
    # Orders (0,1,2), (2,1,0), (1,2,0): the 0.7 lands on option 0, then 2, then 1.
    np.testing.assert_allclose(averaged[0], [(0.7 + 0.15 + 0.15) / 3, (0.15 + 0.15 + 0.7) / 3, (0.15 + 0.7 + 0.15) / 3])
    assert spread[0] == pytest.approx(0.55)  # TV between [.7,.15,.15] and a moved 0.7 is 0.55
