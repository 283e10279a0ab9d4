"""Percentile bootstrap of mean distances: row and question-clustered, order-free, paired."""

import math
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demoscope.metrics import bootstrap as bootstrap_module
from demoscope.metrics import bootstrap_ci, grouped_bootstrap_ci, paired_bootstrap_ci


def test_interval_contains_the_sample_mean():
    values = np.random.default_rng(0).normal(0.2, 0.05, size=300)
    mean, low, high = bootstrap_ci(values)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    # Roughly the normal-theory width 2 * 1.96 * sd / sqrt(n).
    assert high - low == pytest.approx(2 * 1.96 * values.std() / math.sqrt(300), rel=0.2)


def test_interval_narrows_with_more_data():
    rng = np.random.default_rng(1)
    _, lo_small, hi_small = bootstrap_ci(rng.normal(size=50))
    _, lo_big, hi_big = bootstrap_ci(rng.normal(size=5000))
    assert hi_big - lo_big < (hi_small - lo_small) / 5


def test_same_seed_same_interval_other_seed_differs():
    values = np.random.default_rng(2).uniform(size=100)
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


def test_nans_are_ignored_and_all_nan_gives_nan():
    mean, low, high = bootstrap_ci([0.1, np.nan, 0.3, np.nan])
    assert mean == pytest.approx(0.2)
    assert 0.1 <= low <= high <= 0.3
    assert all(math.isnan(x) for x in bootstrap_ci([np.nan, np.nan]))


def test_bad_confidence_is_rejected():
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], confidence=1.0)


def test_grouped_rows_have_keys_stats_and_counts():
    frame = pd.DataFrame(
        {
            "group": ["a", "a", "a", "b", "b", "b"],
            "emd": [0.1, 0.2, 0.3, 0.5, np.nan, 0.7],
        }
    )
    out = grouped_bootstrap_ci(frame, "emd", "group", n_boot=200)
    assert list(out.columns) == ["group", "mean", "low", "high", "n"]
    assert out["group"].tolist() == ["a", "b"]
    assert out["mean"].tolist() == pytest.approx([0.2, 0.6])
    assert out["n"].tolist() == [3, 2]
    assert (out["low"] <= out["mean"]).all() and (out["mean"] <= out["high"]).all()
    # Same seed per group: a group's interval does not depend on the others.
    alone = bootstrap_ci([0.1, 0.2, 0.3], n_boot=200)
    assert tuple(out.iloc[0][["mean", "low", "high"]]) == pytest.approx(alone)


def test_grouped_by_several_keys_and_missing_column():
    frame = pd.DataFrame({"q": [1, 1, 2], "g": ["x", "y", "x"], "emd": [0.1, 0.2, 0.3]})
    out = grouped_bootstrap_ci(frame, "emd", ["q", "g"], n_boot=50)
    assert list(out.columns) == ["q", "g", "mean", "low", "high", "n"]
    assert len(out) == 3
    with pytest.raises(ValueError, match="lacks column"):
        grouped_bootstrap_ci(frame, "wd", "g")


# --- Order-free, clustered and paired intervals (issue 12) ---------------------------------

# Rows of (question key, value); values may be NaN (non-ordinal questions).
_values = st.one_of(st.floats(0, 1), st.just(float("nan")))
_rows = st.lists(st.tuples(st.sampled_from(["q1", "q2", "q3", "q10", "q7"]), _values, _values), min_size=1, max_size=40)


def _reference_ci(values, clusters, n_boot, seed, confidence=0.95):
    """The documented procedure in a plain loop: canonical clusters, rng.integers(0, C, C) per resample,
    ratio of sums.
    """
    if clusters is None:
        rows = sorted(v for v in values if not math.isnan(v))
        sums, counts = rows, [1.0] * len(rows)
    else:
        kept = sorted((str(c), v) for c, v in zip(clusters, values) if not math.isnan(v))
        keys = sorted({c for c, _ in kept})
        sums = [sum(v for c, v in kept if c == k) for k in keys]
        counts = [sum(1.0 for c, _ in kept if c == k) for k in keys]
    if not sums:
        return (float("nan"),) * 3
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(sums), len(sums))
        estimates.append(sum(sums[i] for i in idx) / sum(counts[i] for i in idx))
    tail = (1 - confidence) / 2
    low, high = np.quantile(estimates, [tail, 1 - tail])
    return sum(sums) / sum(counts), low, high


def _same(a, b) -> bool:
    """Bit-identical tuples, NaN equal to NaN."""
    return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b))


@settings(max_examples=60, deadline=None)
@given(rows=_rows, data=st.data(), clustered=st.booleans())
def test_any_row_order_gives_the_identical_interval(rows, data, clustered):
    order = data.draw(st.permutations(range(len(rows))))
    shuffled = [rows[i] for i in order]
    keys, values, _ = zip(*rows)
    keys2, values2, _ = zip(*shuffled)
    first = bootstrap_ci(values, n_boot=50, seed=3, clusters=keys if clustered else None)
    again = bootstrap_ci(values2, n_boot=50, seed=3, clusters=keys2 if clustered else None)
    assert _same(first, again)


@settings(max_examples=40, deadline=None)
@given(rows=_rows, data=st.data())
def test_paired_interval_is_order_free(rows, data):
    order = data.draw(st.permutations(range(len(rows))))
    keys, a, b = (list(c) for c in zip(*rows))
    p = [rows[i] for i in order]
    keys2, a2, b2 = (list(c) for c in zip(*p))
    first = paired_bootstrap_ci(a, b, n_boot=40, seed=1, clusters=keys)
    again = paired_bootstrap_ci(a2, b2, n_boot=40, seed=1, clusters=keys2)
    assert _same(list(first.values()), list(again.values()))


@settings(max_examples=40, deadline=None)
@given(rows=_rows, clustered=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_matches_the_documented_draws_in_a_plain_loop(rows, clustered, seed):
    keys, values, _ = zip(*rows)
    clusters = keys if clustered else None
    # A tiny chunk cap, so this also checks that drawing in chunks leaves the random stream unchanged.
    with mock.patch.object(bootstrap_module, "_MAX_DRAWS_PER_CHUNK", 7):
        chunked = bootstrap_ci(values, n_boot=30, seed=seed, clusters=clusters)
    want = _reference_ci(values, clusters, n_boot=30, seed=seed)
    for got in (bootstrap_ci(values, n_boot=30, seed=seed, clusters=clusters), chunked):
        if math.isnan(want[0]):
            assert all(math.isnan(x) for x in got)
        else:
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def _correlated_questions(n_questions=60, per_question=22, seed=0):
    """Rows whose value is their question's value: perfectly correlated within a question."""
    rng = np.random.default_rng(seed)
    per = np.sort(rng.uniform(0.05, 0.4, n_questions))
    keys = np.repeat([f"q{i:03d}" for i in range(n_questions)], per_question)  # key order = value order
    return per, keys, np.repeat(per, per_question)


def test_clustered_interval_contains_the_mean_and_is_wider_than_the_row_one():
    per, keys, values = _correlated_questions()
    mean, low, high = bootstrap_ci(values, clusters=keys)
    _, row_low, row_high = bootstrap_ci(values)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    # 22 copies of each value: rows pretend to be 22x more data, so the row interval is about sqrt(22) narrower.
    assert (high - low) / (row_high - row_low) == pytest.approx(math.sqrt(22), rel=0.25)
    # Resampling whole questions of identical rows is resampling the per-question values.
    assert (mean, low, high) == pytest.approx(bootstrap_ci(per), rel=1e-9)


def test_paired_difference_of_identical_systems_is_exactly_zero():
    _, keys, values = _correlated_questions()
    values = values + np.random.default_rng(5).normal(0, 0.05, values.size)
    result = paired_bootstrap_ci(values, values, clusters=keys)
    assert (result["mean"], result["low"], result["high"]) == (0.0, 0.0, 0.0)
    assert (result["gap_reduction"], result["gap_low"], result["gap_high"]) == (0.0, 0.0, 0.0)
    assert result["n"] == values.size and result["clusters"] == 60


def test_paired_interval_is_narrower_than_the_unpaired_one_for_correlated_systems():
    rng = np.random.default_rng(6)
    _, keys, values = _correlated_questions(seed=6)
    other = values + 0.01 + rng.normal(0, 0.005, values.size)  # worse by 0.01, sharing each question's difficulty
    paired = paired_bootstrap_ci(values, other, clusters=keys)
    _, a_low, a_high = bootstrap_ci(values, clusters=keys)
    _, b_low, b_high = bootstrap_ci(other, clusters=keys)
    unpaired_width = math.hypot(a_high - a_low, b_high - b_low)  # independent samples' widths add in quadrature
    assert paired["high"] - paired["low"] < unpaired_width / 5
    assert paired["high"] < 0  # the paired interval sees the 0.01 gap; the unpaired ones overlap
    assert a_high > b_low
    assert paired["mean"] == pytest.approx((values - other).mean())
    assert paired["gap_reduction"] == pytest.approx((other.mean() - values.mean()) / other.mean())
    assert paired["gap_low"] <= paired["gap_reduction"] <= paired["gap_high"]


def test_paired_counts_only_rows_where_both_systems_are_defined():
    a = np.array([0.1, 0.2, np.nan, 0.4, 0.5])
    b = np.array([0.2, np.nan, 0.3, 0.6, 0.5])
    result = paired_bootstrap_ci(a, b, n_boot=200, clusters=["x", "x", "y", "z", "z"])
    assert result["mean"] == pytest.approx(((0.1 - 0.2) + (0.4 - 0.6) + 0.0) / 3)
    assert result["n"] == 3 and result["clusters"] == 2
    assert result["gap_reduction"] == pytest.approx((1.3 - 1.0) / 1.3)


@settings(max_examples=30, deadline=None)
@given(rows=_rows, seed=st.integers(0, 1000))
def test_paired_matches_a_plain_loop_over_the_same_draws(rows, seed):
    keys, a, b = (np.array(c, dtype=object if i == 0 else float) for i, c in enumerate(zip(*rows)))
    got = paired_bootstrap_ci(a, b, n_boot=25, seed=seed, clusters=keys)
    both = ~(np.isnan(a) | np.isnan(b))
    kept = sorted((str(k), x - y, y) for k, x, y in zip(keys[both], a[both], b[both]))
    if not kept:
        assert got["n"] == 0 and math.isnan(got["mean"])
        return
    names = sorted({k for k, _, _ in kept})
    d = [sum(x for k, x, _ in kept if k == c) for c in names]
    o = [sum(y for k, _, y in kept if k == c) for c in names]
    n = [sum(1 for k, _, _ in kept if k == c) for c in names]
    rng = np.random.default_rng(seed)
    diffs, gaps = [], []
    for _ in range(25):
        idx = rng.integers(0, len(names), len(names))
        diffs.append(sum(d[i] for i in idx) / sum(n[i] for i in idx))
        gaps.append(-sum(d[i] for i in idx) / sum(o[i] for i in idx) if sum(o[i] for i in idx) else float("nan"))
    assert got["mean"] == pytest.approx(sum(d) / sum(n), rel=1e-12, abs=1e-12)
    assert [got["low"], got["high"]] == pytest.approx(list(np.quantile(diffs, [0.025, 0.975])), rel=1e-12, abs=1e-12)
    if sum(o) and all(math.isfinite(g) for g in gaps):
        assert [got["gap_low"], got["gap_high"]] == pytest.approx(list(np.quantile(gaps, [0.025, 0.975])), rel=1e-9,
                                                                  abs=1e-12)


def test_grouped_clusters_within_each_group():
    frame = pd.DataFrame({"g": ["a"] * 6 + ["b"] * 2, "q": ["1", "1", "2", "2", "3", "3", "1", "2"],
                          "wd": [0.1, 0.1, 0.3, 0.3, 0.5, 0.5, 0.2, 0.4]})
    out = grouped_bootstrap_ci(frame, "wd", "g", n_boot=300, cluster_col="q")
    first = bootstrap_ci(frame.wd[:6], n_boot=300, clusters=frame.q[:6])
    assert tuple(out.iloc[0][["mean", "low", "high"]]) == pytest.approx(first)
    assert out["n"].tolist() == [6, 2]
    with pytest.raises(ValueError, match="lacks column"):
        grouped_bootstrap_ci(frame, "wd", "g", cluster_col="qkey")
