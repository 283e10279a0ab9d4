"""sample_questions: whole questions, at most the cap, seeded."""

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from demoscope.surveys.finetuning import sample_questions

sizes = st.lists(st.integers(1, 12), min_size=1, max_size=15)


def frame_of(group_counts: list[int]) -> pd.DataFrame:
    return pd.DataFrame([{"qkey": f"q{i}", "group": f"g{j}"} for i, n in enumerate(group_counts) for j in range(n)])


@settings(max_examples=80, deadline=None)
@given(sizes, st.integers(0, 80), st.integers(0, 3))
def test_whole_questions_within_the_cap(group_counts, cap, seed):
    frame = frame_of(group_counts)
    kept = sample_questions(frame, cap, seed=seed)
    if cap == 0 or len(frame) <= cap:
        assert kept is frame
        return
    counts = frame.groupby("qkey").size()
    kept_counts = kept.groupby("qkey").size()
    assert (kept_counts == counts[kept_counts.index]).all()  # every kept question keeps all its rows
    assert len(kept) <= cap or kept.qkey.nunique() == 1  # over the cap only when one question alone exceeds it
    # Greedy in a random order: no left-out question would still have fitted.
    left_out = counts.drop(kept_counts.index)
    assert (left_out > cap - len(kept)).all()
    assert kept.equals(sample_questions(frame, cap, seed=seed))
