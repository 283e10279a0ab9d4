"""Percentile bootstrap of mean distances."""

import math

import numpy as np
import pandas as pd
import pytest

from demoscope.metrics import bootstrap_ci, grouped_bootstrap_ci


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
