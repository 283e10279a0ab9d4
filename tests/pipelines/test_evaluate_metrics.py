"""evaluate's distances, SimBench-style score and noise floor, checked against plain code (baselines only: no Ray)."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from demoscope.pipelines import evaluate as evaluate_job
from demoscope.pipelines.evaluate import EvaluateConfig


def plain_human(output_dist):
    shares = np.asarray(output_dist[:-1], dtype=float)
    return shares / shares.sum()


def plain_tv(p, q):
    return 0.5 * sum(abs(a - b) for a, b in zip(p, q))


def plain_js(p, q):
    m = [(a + b) / 2 for a, b in zip(p, q)]

    def kl2(a, b):
        return sum(x * math.log2(x / y) for x, y in zip(a, b) if x > 0)

    return math.sqrt(max(0.0, 0.5 * kl2(p, m) + 0.5 * kl2(q, m)))


@pytest.fixture(scope="module")
def baselines(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("metrics")
    result = evaluate_job.evaluate(EvaluateConfig(test_file=str(prepared["train"]), baselines_only=True,
                                                  out=str(out), n_boot=100))
    return pd.read_parquet(result.predictions), result.metrics, (out / "report.md").read_text()


def test_tv_js_kl_and_the_simbench_score_equal_plain_code(baselines):
    predictions, metrics, text = baselines
    rows = predictions.dropna(subset=["dist_other_groups"])
    for row in rows.itertuples():
        human = plain_human(row.output_dist)
        other = np.asarray(row.dist_other_groups, dtype=float)
        assert row.tv_other_groups == pytest.approx(plain_tv(human, other / other.sum()), abs=1e-12)
        assert row.js_other_groups == pytest.approx(plain_js(human, other / other.sum()), abs=1e-7)
        flat = np.full(len(human), 1 / len(human))  # SimBench's uniform: every scored option
        assert row.tv_uniform == pytest.approx(plain_tv(human, flat), abs=1e-12)
    scores = {r["system"]: r for r in metrics["distances"]["systems"]}
    norm = predictions["tv_uniform"].mean()
    expected = np.mean([100 * (1 - tv / norm) for tv in predictions["tv_other_groups"].dropna()])
    assert scores["other_groups"]["simbench"] == pytest.approx(expected, abs=1e-9)
    assert scores["uniform"]["simbench"] == pytest.approx(0.0, abs=1e-9)
    # OpinionQA's representativeness: 1 - the mean WD (its WD is range-normalised like ours)
    assert scores["other_groups"]["representativeness"] == pytest.approx(1 - predictions["wd_other_groups"].mean())
    other = scores["other_groups"]
    assert other["simbench_low"] < other["simbench"] < other["simbench_high"]
    assert "## Other distances and the SimBench-style score" in text
    assert f"{scores['other_groups']['simbench']:.1f} [" in text


def test_the_noise_floor_follows_the_respondent_counts(baselines):
    predictions, metrics, text = baselines
    floor = predictions["wd_noise_floor"]
    assert floor.notna().all() and (floor >= 0).all() and (floor > 0).mean() > 0.9  # 0: everyone gave one answer
    # Fewer people, a larger floor: within each question, groups with smaller n_eff sit further from their truth.
    correlation = predictions.groupby("qkey").apply(
        lambda q: q["n_eff"].corr(q["tv_noise_floor"], method="spearman"), include_groups=False)
    assert correlation.mean() < -0.5
    summary = metrics["noise_floor"]
    assert summary["available"] and summary["wd"] == pytest.approx(floor.mean())
    assert summary["excess_wd"]["other_groups"] == pytest.approx(predictions["wd_other_groups"].mean() - floor.mean())
    assert summary["rows_below_min_n_eff"] == int((predictions["n_eff"] < 30).sum())
    assert "noise_floor" in {r["system"] for r in metrics["overall"]} and "## Human noise floor" in text


def test_without_respondent_counts_the_report_says_why_there_is_no_floor(prepared, tmp_path):
    split = pd.read_parquet(prepared["test"]).drop(columns=["n", "n_eff"])
    split.to_parquet(tmp_path / "test.parquet")
    result = evaluate_job.evaluate(EvaluateConfig(test_file=str(tmp_path / "test.parquet"), baselines_only=True,
                                                  out=str(tmp_path / "out"), n_boot=50))
    assert result.metrics["noise_floor"] == {"available": False}
    assert "carries no respondent counts (`n_eff`)" in (tmp_path / "out" / "report.md").read_text()
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["distances"]["systems"]


def test_calibration_needs_a_model_and_enough_questions(prepared, tmp_path):
    from demoscope.errors import ConfigError

    with pytest.raises(ConfigError, match="--calibrate rescales a model's answers"):
        evaluate_job.evaluate(EvaluateConfig(test_file=str(prepared["test"]), baselines_only=True, calibrate=1,
                                             out=str(tmp_path)))
    questions = pd.read_parquet(prepared["test"])["qkey"].nunique()
    with pytest.raises(ConfigError, match=f"has {questions}"):
        evaluate_job.evaluate(EvaluateConfig(test_file=str(prepared["test"]), calibrate=questions, out=str(tmp_path)))
