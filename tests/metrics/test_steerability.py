"""Steerability table against a plain per-group loop."""

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from demoscope.metrics.steerability import steerability

distance = st.one_of(st.floats(0, 3, allow_nan=False), st.just(math.nan))
row = st.tuples(st.sampled_from(["A1", "A2"]), st.sampled_from(["g1", "g2", "g3"]), distance, distance)


@settings(max_examples=60, deadline=None)
@given(st.lists(row, min_size=1, max_size=40))
def test_matches_a_plain_loop(rows):
    frame = pd.DataFrame(rows, columns=["attribute", "group", "wd_tuned", "wd_tuned_unsteered"])
    got = steerability(frame, "tuned").set_index(["attribute", "group"])
    seen = {}
    for attribute, group, steered, unsteered in rows:
        if math.isnan(steered) or math.isnan(unsteered):
            continue
        for key in ((attribute, group), ("(all)", "(all)")):
            seen.setdefault(key, []).append((steered < unsteered, unsteered - steered))
    assert set(got.index) == set(seen) | {("(all)", "(all)")}
    for key, pairs in seen.items():
        assert got.loc[key, "rows"] == len(pairs)
        assert got.loc[key, "closer_share"] == sum(c for c, _ in pairs) / len(pairs)
        np.testing.assert_allclose(got.loc[key, "mean_gain"], sum(g for _, g in pairs) / len(pairs), atol=1e-12)
    if not seen:
        assert got.loc[("(all)", "(all)"), "rows"] == 0
