"""The evaluate job on a real local Ray: per-row predictions, WD report, baselines, exclusions."""

import json

import numpy as np
import pandas as pd
import pytest

from demoscope.metrics import ordinal_wasserstein, uniform_baseline
from demoscope.metrics.opinion import human_distribution
from demoscope.models import TransformersOptionScorer, load_causal_lm
from demoscope.models.names import resolve_model
from demoscope.pipelines import evaluate as evaluate_job
from demoscope.pipelines.evaluate import EvaluateConfig
from demoscope.surveys.prompts import unsteered_prompt

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def adapter(random_adapter):
    return random_adapter


def test_predictions_match_the_scorer_and_the_metric(local_ray, prepared, adapter, tmp_path):
    config = EvaluateConfig(test_file=str(prepared["test"]), adapter=str(adapter), out=str(tmp_path), n_boot=200,
                            calibrate=1, option_orders=2, in_process_rows=0)  # Ray Data's path; the next test: both
    assert evaluate_job.run(config) == 0
    predictions = pd.read_parquet(tmp_path / "predictions")
    test = pd.read_parquet(prepared["test"])
    assert len(predictions) == len(test)
    assert {"dist_tuned", "dist_base", "wd_tuned", "wd_base", "wd_uniform"} <= set(predictions.columns)
    # Spot-check rows against the library scorer and metric, in-process.
    model, tokenizer = load_causal_lm(resolve_model("tiny:llama"), adapters={"adapter": str(adapter)})
    scorer = TransformersOptionScorer(model, tokenizer, adapter="adapter")
    merged = predictions.merge(test[["qkey", "group", "input_prompt"]], on=["qkey", "group"]).head(5)
    expected = scorer.score(list(merged.input_prompt), [len(o) for o in merged.ordinal])
    for row, dist in zip(merged.itertuples(), expected):
        assert np.allclose(row.dist_tuned, dist, atol=1e-5)
        human = human_distribution(list(row.output_dist), list(row.ordinal))
        assert row.wd_tuned == pytest.approx(ordinal_wasserstein(human, dist, list(row.ordinal)), nan_ok=True)
        assert row.wd_uniform == pytest.approx(ordinal_wasserstein(human, uniform_baseline(list(row.ordinal)),
                                                                   list(row.ordinal)), nan_ok=True)
    assert not np.allclose(np.concatenate(predictions.dist_tuned.tolist()),
                           np.concatenate(predictions.dist_base.tolist()))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    overall = {row["system"]: row for row in metrics["overall"]}
    assert overall["tuned"]["mean"] == pytest.approx(predictions.wd_tuned.mean())
    assert overall["tuned"]["low"] <= overall["tuned"]["mean"] <= overall["tuned"]["high"]
    assert set(metrics["gap_reduction"]) == {"tuned_calibrated", "tuned_order_avg", "base", "base_order_avg",
                                             "uniform"}  # the floor is no gap
    for name in ("report.md", "wd_by_group.png", "wd_histogram.png", "config.yaml"):
        assert (tmp_path / name).exists()
    # Steerability: the same questions without their prefix, scored by the same model.
    unsteered = scorer.score([unsteered_prompt(p) for p in merged.input_prompt], [len(o) for o in merged.ordinal])
    for row, dist in zip(merged.itertuples(), unsteered):
        assert unsteered_prompt(row.input_prompt) != row.input_prompt
        assert np.allclose(row.dist_tuned_unsteered, dist, atol=1e-5)
    assert not np.allclose(np.concatenate(merged.dist_tuned.tolist()),
                           np.concatenate(merged.dist_tuned_unsteered.tolist()))
    pooled = metrics["steerability"]["tuned"][-1]
    assert pooled["rows"] == predictions.wd_tuned.notna().sum()
    assert pooled["closer_share"] == pytest.approx((predictions.wd_tuned < predictions.wd_tuned_unsteered).mean())
    assert set(metrics["steerability"]) == {"tuned", "base"}
    assert "## Steerability" in (tmp_path / "report.md").read_text()
    # The model's TV, and --calibrate's cross-validated row with its paired gain and interval.
    for row in merged.itertuples():
        human = human_distribution(list(row.output_dist), list(row.ordinal))
        assert row.tv_tuned == pytest.approx(0.5 * np.abs(human - np.asarray(row.dist_tuned)).sum(), abs=1e-12)
    assert predictions["wd_tuned_calibrated"].notna().sum() == predictions["wd_tuned"].notna().sum()
    assert (predictions["temperature_tuned"] > 0).all()
    systems = [row["system"] for row in metrics["overall"]]
    assert systems[:3] == ["tuned", "tuned_calibrated", "tuned_order_avg"] and systems[-1] == "noise_floor"
    gain = metrics["calibration"]["gain"][0]
    assert gain["difference"] == "tuned - tuned_calibrated" and gain["low"] <= gain["mean"] <= gain["high"]
    assert gain["mean"] == pytest.approx((predictions.wd_tuned - predictions.wd_tuned_calibrated).mean())
    assert "## Calibration (temperature scaling" in (tmp_path / "report.md").read_text()
    # --option-orders 2: each item also asked with its options reversed, the answer mapped back and averaged.
    from demoscope.surveys.option_orders import reorder_options

    for row, dist in zip(merged.itertuples(), expected):
        n = len(row.ordinal)
        reversed_ = scorer.score([reorder_options(row.input_prompt, tuple(range(n))[::-1])], [n])[0][::-1]
        np.testing.assert_allclose(row.dist_tuned_order_avg, (dist + reversed_) / 2, atol=1e-5)
        assert row.order_tv_tuned == pytest.approx(0.5 * np.abs(reversed_ - dist).sum(), abs=1e-5)
    assert metrics["option_orders"]["orders"] == 2 and "tuned_order_avg" in systems
    assert "## Option-order robustness (2 orders)" in (tmp_path / "report.md").read_text()


def test_a_small_run_scores_in_this_process_with_ray_datas_results(local_ray, prepared, adapter, tmp_path,
                                                                  monkeypatch):
    real_init = evaluate_job.init_ray
    calls = []
    monkeypatch.setattr(evaluate_job, "init_ray", lambda *a, **k: calls.append(a) or real_init(*a, **k))
    runs = {}
    for rows in (0, 10**6):  # always Ray Data; in this process for anything this size
        config = EvaluateConfig(test_file=str(prepared["test"]), adapter=str(adapter), out=str(tmp_path / str(rows)),
                                n_boot=50, in_process_rows=rows)
        evaluate_job.run(config)
        runs[rows] = pd.read_parquet(tmp_path / str(rows) / "predictions")
    assert len(calls) == 1  # only the first run started (attached to) Ray
    ray_data, here = runs[0], runs[10**6]
    assert list(ray_data.columns) == list(here.columns) and len(ray_data) == len(here) > 0
    for column in ray_data:
        if column.startswith("dist_"):  # Ray's actor runs torch on one thread: float sums may differ by rounding
            for a, b in zip(ray_data[column], here[column]):
                np.testing.assert_allclose(a, b, atol=1e-6)
        elif ray_data[column].dtype.kind == "f":
            np.testing.assert_allclose(ray_data[column], here[column], atol=1e-6)
        else:
            assert ray_data[column].astype(str).tolist() == here[column].astype(str).tolist()
    # a cluster address, more than one replica, or more rows than the limit go to Ray Data
    assert evaluate_job.in_process(config, 10, None)
    assert not evaluate_job.in_process(config, 10, "127.0.0.1:6379")
    assert not evaluate_job.in_process(config.model_copy(update={"replicas": 2}), 10, None)
    assert not evaluate_job.in_process(config.model_copy(update={"in_process_rows": 9}), 10, None)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert not evaluate_job.in_process(config, 10, None)


def test_excluded_questions_are_left_out(local_ray, prepared, tmp_path):
    test = pd.read_parquet(prepared["test"])
    dropped = sorted(test.qkey.unique())[:1]
    config = EvaluateConfig(test_file=str(prepared["test"]), out=str(tmp_path), exclude_questions=dropped, n_boot=50)
    assert evaluate_job.run(config) == 0
    predictions = pd.read_parquet(tmp_path / "predictions")
    assert len(predictions) == (~test.qkey.isin(dropped)).sum() and "wd_model" in predictions


def test_missing_adapter_folder_is_a_clear_error(tmp_path, prepared):
    from demoscope.errors import ConfigError

    with pytest.raises(ConfigError, match="has no adapter_config.json"):
        evaluate_job.run(EvaluateConfig(test_file=str(prepared["test"]), adapter=str(tmp_path),
                                        out=str(tmp_path / "o")))


def test_weak_to_strong_mode_steers_the_large_model_with_the_small_pair(local_ray, prepared, adapter, tmp_path):
    from demoscope.models.weak_to_strong import reweight

    config = EvaluateConfig(test_file=str(prepared["test"]), model="tiny:gpt2", guide_model="tiny:llama",
                            guide_adapter=str(adapter), guide_beta=0.5, out=str(tmp_path), n_boot=50)
    assert evaluate_job.run(config) == 0
    predictions = pd.read_parquet(tmp_path / "predictions")
    for row in predictions.head(5).itertuples():
        assert np.allclose(row.dist_steered,
                           reweight(row.dist_large, row.dist_small_tuned, row.dist_small_untuned, 0.5))
    assert not np.allclose(np.concatenate(predictions.dist_steered.tolist()),
                           np.concatenate(predictions.dist_large.tolist()))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [row["system"] for row in metrics["overall"]] == ["steered", "large", "small_tuned", "small_untuned",
                                                             "uniform", "noise_floor"]
    assert {"large", "small_tuned"} <= set(metrics["gap_reduction"])
    assert "Weak-to-strong" in (tmp_path / "report.md").read_text()


def test_weak_to_strong_mode_needs_the_small_adapter(tmp_path, prepared, adapter):
    from demoscope.errors import ConfigError

    with pytest.raises(ConfigError, match="needs --guide-adapter"):
        evaluate_job.run(EvaluateConfig(test_file=str(prepared["test"]), guide_model="tiny:llama", out=str(tmp_path)))
    with pytest.raises(ConfigError, match="not --adapter"):
        evaluate_job.run(EvaluateConfig(test_file=str(prepared["test"]), guide_model="tiny:llama", adapter=str(adapter),
                                        guide_adapter=str(adapter), out=str(tmp_path)))


@pytest.mark.slow
def test_a_leaderboard_scores_every_system_on_the_same_rows(local_ray, prepared, adapter, tmp_path):
    config = EvaluateConfig(test_file=str(prepared["test"]), out=str(tmp_path), n_boot=50, calibrate=1,
                            systems={"lora": {"model": "tiny:llama", "adapter": str(adapter)},
                                     "gpt2": {"model": "tiny:gpt2"}})
    result = evaluate_job.evaluate(config)
    predictions = pd.read_parquet(result.predictions)
    single = evaluate_job.evaluate(EvaluateConfig(test_file=str(prepared["test"]), adapter=str(adapter),
                                                  out=str(tmp_path / "single"), n_boot=50, compare_base=False))
    # A leaderboard system scores exactly what a run of that system alone scores.
    np.testing.assert_allclose(predictions["wd_lora"], pd.read_parquet(single.predictions)["wd_tuned"])
    board = {row["system"]: row for row in result.metrics["leaderboard"]}
    assert set(board) == {"lora", "lora_calibrated", "gpt2", "gpt2_calibrated", "uniform"}
    assert [row["rank"] for row in result.metrics["leaderboard"]] == [1, 2, 3, 4, 5]
    assert board["gpt2"]["wd"] == pytest.approx(predictions["wd_gpt2"].mean())
    best = result.metrics["leaderboard"][0]["system"]
    assert board["gpt2"]["vs_best"] == pytest.approx((predictions["wd_gpt2"] - predictions[f"wd_{best}"]).mean())
    assert (tmp_path / "leaderboard_wd.png").exists() and "## Leaderboard" in (tmp_path / "report.md").read_text()


def test_leaderboard_settings_are_checked_before_ray(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="does not combine with --adapter"):
        EvaluateConfig(test_file="t.parquet", adapter="a", systems={"x": {"model": "tiny:llama"}})
    with pytest.raises(ValidationError, match="system name 'noise_floor'"):
        EvaluateConfig(test_file="t.parquet", systems={"noise_floor": {"model": "tiny:llama"}})
