"""summarize(): overall, per-group and paired-difference intervals that do not depend on row order."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demoscope.metrics import bootstrap_ci, paired_bootstrap_ci
from demoscope.metrics.opinion import summarize

GROUPS = [("PARTY", "Democrat"), ("PARTY", "Republican"), ("AGE", "18-29")]


def _predictions(n_questions: int = 40, seed: int = 0, non_ordinal: int = 2) -> pd.DataFrame:
    """One row per question x group; WD shares each question's difficulty; `tuned` is better than `base` by 0.02."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_questions):
        difficulty = rng.uniform(0.1, 0.3)
        for attribute, group in GROUPS:
            base = difficulty + rng.normal(0, 0.01)
            rows.append({"qkey": f"Q{q:03d}", "attribute": attribute, "group": group, "wd_base": base,
                         "wd_tuned": base - 0.02 + rng.normal(0, 0.005), "wd_uniform": difficulty + 0.1})
    frame = pd.DataFrame(rows)
    frame.loc[frame.qkey.isin([f"Q{q:03d}" for q in range(non_ordinal)]),
              ["wd_base", "wd_tuned", "wd_uniform"]] = np.nan
    return frame


SYSTEMS = ["tuned", "base", "uniform"]


@settings(max_examples=15, deadline=None)
@given(order=st.randoms(use_true_random=False), kind=st.sampled_from(["question", "row"]))
def test_same_rows_in_any_order_give_identical_summaries(order, kind):
    frame = _predictions(n_questions=12)
    index = list(frame.index)
    order.shuffle(index)
    first = summarize(frame, SYSTEMS, n_boot=60, bootstrap=kind)
    again = summarize(frame.loc[index], SYSTEMS, n_boot=60, bootstrap=kind)
    for key in ("overall", "per_group", "differences"):
        pd.testing.assert_frame_equal(first[key], again[key], check_exact=True)
    assert first["gap_reduction"] == again["gap_reduction"]


def test_question_intervals_are_wider_than_row_intervals_and_labelled():
    frame = _predictions()
    clustered = summarize(frame, SYSTEMS, n_boot=500)
    rows = summarize(frame, SYSTEMS, n_boot=500, bootstrap="row")
    assert clustered["bootstrap"]["description"] == ("95% interval, questions resampled (clustered bootstrap), "
                                                     "500 resamples, seed 0")
    assert rows["bootstrap"]["kind"] == "row" and "row bootstrap" in rows["bootstrap"]["description"]
    width = lambda s: (s["overall"]["high"] - s["overall"]["low"]).to_numpy()  # noqa: E731
    assert (width(clustered) > 1.3 * width(rows)).all()
    pd.testing.assert_series_equal(clustered["overall"]["mean"], rows["overall"]["mean"])
    overall = clustered["overall"].set_index("system")
    assert overall.loc["tuned", "mean"] == pytest.approx(frame.wd_tuned.mean())
    assert overall.loc["tuned", "n"] == 38 * 3 and overall.loc["tuned", "questions"] == 38
    assert overall.loc["tuned", "low"] < overall.loc["tuned", "mean"] < overall.loc["tuned", "high"]
    tuned = bootstrap_ci(frame.wd_tuned, n_boot=500, clusters=frame.qkey)
    assert tuple(overall.loc["tuned", ["mean", "low", "high"]]) == tuned


def test_differences_are_paired_first_minus_each_other():
    frame = _predictions()
    summary = summarize(frame, SYSTEMS, n_boot=500)
    diffs = summary["differences"].set_index("other")
    assert list(diffs["difference"]) == ["tuned - base", "tuned - uniform"]
    assert diffs.loc["base", "mean"] == pytest.approx((frame.wd_tuned - frame.wd_base).mean())
    assert diffs.loc["base", "high"] < 0 and bool(diffs.loc["base", "excludes_zero"])
    assert diffs.loc["base", "n"] == 38 * 3 and diffs.loc["base", "questions"] == 38
    paired = paired_bootstrap_ci(frame.wd_tuned, frame.wd_base, n_boot=500, clusters=frame.qkey)
    assert (diffs.loc["base", "low"], diffs.loc["base", "high"]) == (paired["low"], paired["high"])
    assert diffs.loc["base", "gap_reduction"] == pytest.approx(summary["gap_reduction"]["base"])
    assert diffs.loc["base", "gap_low"] < diffs.loc["base", "gap_reduction"] < diffs.loc["base", "gap_high"]


def test_a_difference_whose_interval_straddles_zero_is_not_claimed():
    frame = _predictions()
    frame["wd_tuned"] = frame["wd_base"] + np.random.default_rng(3).normal(0, 0.01, len(frame))
    diffs = summarize(frame, SYSTEMS, n_boot=500)["differences"].set_index("other")
    assert diffs.loc["base", "low"] < 0 < diffs.loc["base", "high"]
    assert not diffs.loc["base", "excludes_zero"]


def test_per_group_resamples_questions_within_the_group():
    frame = _predictions()
    per_group = summarize(frame, SYSTEMS, n_boot=300)["per_group"]
    assert len(per_group) == len(GROUPS) * len(SYSTEMS)
    row = per_group[(per_group.group == "Democrat") & (per_group.system == "base")].iloc[0]
    part = frame[frame.group == "Democrat"]
    assert row["n"] == 38
    assert (row["mean"], row["low"], row["high"]) == bootstrap_ci(part.wd_base, n_boot=300, clusters=part.qkey)


def test_unknown_bootstrap_kind_is_rejected():
    with pytest.raises(ValueError, match="bootstrap must be one of"):
        summarize(_predictions(n_questions=3), SYSTEMS, bootstrap="rows")
