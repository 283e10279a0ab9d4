"""Opinion distillation: a prepared split's targets replaced by a teacher's option distributions."""

import numpy as np
import pandas as pd
import pytest

from demoscope.distill import teacher_option_dists, teacher_option_targets
from demoscope.errors import ConfigError
from demoscope.training.objectives import pad_targets


@pytest.fixture
def split():
    return pd.DataFrame({
        "qkey": ["q1", "q2"],
        "input_prompt": ["Question: A?\nA. Yes\nB. No\nC. Refused\n\nAnswer:",
                         "Question: B?\nA. Up\nB. Refused\n\nAnswer:"],
        "output_dist": [[0.5, 0.4, 0.1], [0.9, 0.3]],
        "attribute": ["POLIDEOLOGY", "POLIDEOLOGY"],
        "group": ["Liberal", "Liberal"],
        "ordinal": [[1.0, 2.0], [1.0]],
    })


class FakeScorer:
    def __init__(self):
        self.calls = []

    def score(self, prompts, n_options):
        self.calls.append((list(prompts), list(n_options)))
        return [np.arange(1, n + 1, dtype=float) / sum(range(1, n + 1)) for n in n_options]


def test_teacher_distributions_replace_the_survey_targets(split):
    scorer = FakeScorer()
    dists = teacher_option_dists(split, scorer)
    assert scorer.calls == [(split["input_prompt"].tolist(), [3, 2])]  # every shown option, refusal included
    out = teacher_option_targets(split, dists)
    # As `prepare` writes a survey: answers renormalised without the refusal, then the refusal share.
    np.testing.assert_allclose(out["output_dist"][0], [1 / 3, 2 / 3, 3 / 6])
    np.testing.assert_allclose(out["output_dist"][1], [1.0, 2 / 3])
    assert split["output_dist"][0] == [0.5, 0.4, 0.1]  # the input frame is untouched
    assert out.drop(columns="output_dist").equals(split.drop(columns="output_dist"))
    # The opinion trainer's padding accepts the new targets.
    assert pad_targets(out["output_dist"][0], out["ordinal"][0])[0][:4] == pytest.approx([1 / 3, 2 / 3, 3 / 6, 0])


def test_shorter_teacher_distributions_are_renormalised_and_zero_padded(split):
    out = teacher_option_targets(split, [[2.0, 2.0], [1.0]])
    assert out["output_dist"].tolist() == [[0.5, 0.5, 0.0], [1.0, 0.0]]


def test_bad_teacher_distributions_are_refused(split):
    with pytest.raises(ConfigError, match="2 rows"):
        teacher_option_targets(split, [[1.0]])
    with pytest.raises(ConfigError, match="row 1"):
        teacher_option_targets(split, [[1.0], [0.2, 0.3, 0.5]])
    with pytest.raises(ConfigError, match="not a distribution"):
        teacher_option_targets(split, [[1.0], [-1.0, 2.0]])
    with pytest.raises(ConfigError, match="row 1: the teacher puts all its mass on the refusal"):
        teacher_option_targets(split, [[1.0], [0.0, 1.0]])
