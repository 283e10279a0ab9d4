"""The model-free baselines against plain per-row computations."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from demoscope.metrics import ordinal_wasserstein, uniform_baseline
from demoscope.metrics.baselines import baseline_predictions, other_groups_distributions
from demoscope.metrics.opinion import human_distribution

GROUPS = [("CREGION", "South"), ("CREGION", "West"), ("POLPARTY", "Democrat"), ("POLPARTY", "Republican")]


@st.composite
def split_rows(draw) -> pd.DataFrame:
    """A prepared split: a few questions, some of the groups each, some groups repeated (ALL steering)."""
    rows = []
    for q in range(draw(st.integers(1, 4))):
        k = draw(st.integers(2, 5))
        groups = draw(st.lists(st.sampled_from(GROUPS), min_size=1, max_size=4, unique=True))
        for attribute, group in groups:
            weights = np.array(draw(st.lists(st.floats(0.01, 1), min_size=k, max_size=k)))
            dist = (weights / weights.sum()).tolist() + [draw(st.floats(0, 1))]
            for kind in range(draw(st.sampled_from([1, 1, 3]))):
                rows.append({"qkey": f"Q{q}", "attribute": attribute, "group": group, "input_prompt": f"{kind}",
                             "output_dist": dist, "ordinal": [float(j) for j in range(k)]})
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1, random_state=draw(st.integers(0, 10))).reset_index(drop=True)


def plain_other_groups(frame: pd.DataFrame, row) -> np.ndarray | None:
    """Mean of the human distributions of the question's other (attribute, group) pairs, each counted once."""
    others = frame[(frame.qkey == row.qkey) & ((frame.attribute != row.attribute) | (frame.group != row.group))]
    others = others.drop_duplicates(["attribute", "group"])
    if others.empty:
        return None
    return np.mean([human_distribution(d, o) for d, o in zip(others.output_dist, others.ordinal)], axis=0)


@settings(max_examples=100, deadline=None)
@given(split_rows())
def test_other_groups_is_the_mean_of_the_other_groups_counted_once(frame):
    got = other_groups_distributions(frame)
    for row, dist in zip(frame.itertuples(), got):
        expected = plain_other_groups(frame, row)
        if expected is None:
            assert dist is None
        else:
            assert np.allclose(dist, expected)


@settings(max_examples=30, deadline=None)
@given(split_rows())
def test_baseline_predictions_score_both_baselines_with_the_metric(frame):
    result = baseline_predictions(frame)
    assert list(result.columns) == ["qkey", "attribute", "group", "output_dist", "ordinal", "dist_other_groups",
                                    "wd_other_groups", "dist_uniform", "wd_uniform"]
    for row in result.itertuples():
        human = human_distribution(row.output_dist, row.ordinal)
        uniform = ordinal_wasserstein(human, uniform_baseline(row.ordinal), row.ordinal)
        assert row.wd_uniform == uniform or (np.isnan(uniform) and np.isnan(row.wd_uniform))
        if row.dist_other_groups is None:
            assert np.isnan(row.wd_other_groups)
        else:
            assert np.isclose(row.wd_other_groups, ordinal_wasserstein(human, row.dist_other_groups, row.ordinal))
