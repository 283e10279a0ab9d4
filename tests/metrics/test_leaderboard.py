"""The leaderboard: ranks by mean WD, every metric's mean is the column mean, paired differences are exact means."""

import numpy as np
import pandas as pd
import pytest

from demoscope.metrics.leaderboard import leaderboard


def frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(20):
        difficulty = rng.uniform(0.1, 0.3)
        for group in ("A", "B"):
            row = {"qkey": f"q{q}", "group": group}
            for system, offset in (("good", -0.05), ("fair", 0.0), ("uniform", 0.04)):
                row[f"wd_{system}"] = difficulty + offset + rng.normal(0, 0.005)
                row[f"tv_{system}"] = 2 * row[f"wd_{system}"]
                row[f"js_{system}"] = row[f"wd_{system}"] + 0.01
                row[f"kl_{system}"] = row[f"wd_{system}"] ** 2
            rows.append(row)
    return pd.DataFrame(rows)


def test_ranks_means_and_paired_differences():
    predictions = frame()
    table = leaderboard(predictions, ["fair", "uniform", "good"], n_boot=200)
    assert table["system"].tolist() == ["good", "fair", "uniform"] and table["rank"].tolist() == [1, 2, 3]
    good = table.set_index("system").loc["good"]
    for metric in ("wd", "tv", "js", "kl"):
        assert good[metric] == pytest.approx(predictions[f"{metric}_good"].mean())
        assert good[f"{metric}_low"] <= good[metric] <= good[f"{metric}_high"]
    fair = table.set_index("system").loc["fair"]
    assert fair["vs_best"] == pytest.approx((predictions.wd_fair - predictions.wd_good).mean())
    assert fair["vs_best_low"] > 0  # the paired interval separates them
    assert good["vs_best"] == 0.0 and table.set_index("system").loc["uniform", "vs_uniform"] == 0.0
    norm = predictions["tv_uniform"].mean()
    assert good["simbench"] == pytest.approx(np.mean(100 * (1 - predictions.tv_good / norm)))
