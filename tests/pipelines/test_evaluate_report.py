"""evaluate's report() on a predictions folder written here (no model, no Ray): intervals people can cite."""

import json

import numpy as np
import pandas as pd
import pytest

from demoscope.pipelines import evaluate as evaluate_job
from demoscope.pipelines.evaluate import EvaluateConfig


def _write_predictions(folder, seed=0, order_seed=None):
    """Two Parquet parts of per-row WDs for tuned/base/uniform, rows shuffled by ``order_seed`` (as Ray Data may)."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(30):
        difficulty = rng.uniform(0.1, 0.3)
        for group in ("Democrat", "Republican"):
            base = difficulty + rng.normal(0, 0.01)
            rows.append({"qkey": f"Q{q:02d}", "attribute": "PARTY", "group": group, "wd_base": base,
                         "wd_tuned": base - 0.03 + rng.normal(0, 0.005), "wd_uniform": difficulty + 0.05})
    frame = pd.DataFrame(rows)
    frame.loc[frame.qkey == "Q00", ["wd_base", "wd_tuned", "wd_uniform"]] = np.nan  # a non-ordinal question
    if order_seed is not None:
        frame = frame.sample(frac=1.0, random_state=order_seed)
    folder.mkdir(parents=True)
    half = len(frame) // 2
    frame.iloc[:half].to_parquet(folder / "part-0.parquet")
    frame.iloc[half:].to_parquet(folder / "part-1.parquet")
    return frame


def _report(tmp_path, name, order_seed):
    out = tmp_path / name
    frame = _write_predictions(out / "predictions", order_seed=order_seed)
    config = EvaluateConfig(test_file="test.parquet", adapter="runs/train/adapter", out=str(out), n_boot=400)
    assert evaluate_job.report(config, out / "predictions", out)["rows"] > 0
    return frame, json.loads((out / "metrics.json").read_text()), (out / "report.md").read_text()


def test_report_states_the_bootstrap_and_every_interval(tmp_path):
    frame, metrics, text = _report(tmp_path, "a", order_seed=None)
    assert {"rows", "questions", "non_ordinal_rows", "overall", "gap_reduction", "per_group"} <= set(metrics)
    assert (metrics["rows"], metrics["questions"], metrics["non_ordinal_rows"]) == (60, 30, 2)
    assert metrics["bootstrap"]["kind"] == "question" and metrics["bootstrap"]["resamples"] == 400
    assert "95% interval, questions resampled (clustered bootstrap), 400 resamples, seed 0" in text
    overall = {row["system"]: row for row in metrics["overall"]}
    assert overall["tuned"]["mean"] == pytest.approx(frame.wd_tuned.mean(), rel=1e-12)
    assert overall["tuned"]["questions"] == 29 and overall["tuned"]["n"] == 58
    diffs = {row["difference"]: row for row in metrics["differences"]}
    assert set(diffs) == {"tuned - base", "tuned - uniform"}
    assert diffs["tuned - base"]["high"] < 0 and diffs["tuned - base"]["excludes_zero"] is True
    assert diffs["tuned - base"]["gap_reduction"] == pytest.approx(metrics["gap_reduction"]["base"], rel=1e-12)
    assert "| tuned - base |" in text and "| yes |" in text
    # One per-group table: attribute, group, n, then `mean [low, high]` per system.
    assert "| attribute | group | n | tuned | base | uniform |" in text
    dem = next(r for r in metrics["per_group"] if r["group"] == "Democrat" and r["system"] == "tuned")
    assert f"| PARTY | Democrat | 29 | {dem['mean']:.4f} [{dem['low']:.4f}, {dem['high']:.4f}] |" in text


def test_two_runs_with_rows_in_different_orders_report_identical_numbers(tmp_path):
    _, first, text_a = _report(tmp_path, "a", order_seed=1)
    _, again, text_b = _report(tmp_path, "b", order_seed=2)
    assert first == again
    assert text_a.replace("/a/", "/b/") == text_b.replace("/a/", "/b/")


def test_row_bootstrap_is_labelled_as_such(tmp_path):
    out = tmp_path / "r"
    _write_predictions(out / "predictions")
    config = EvaluateConfig(test_file="test.parquet", adapter="runs/train/adapter", out=str(out), n_boot=100,
                            bootstrap="row")
    assert evaluate_job.report(config, out / "predictions", out)["rows"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["bootstrap"]["kind"] == "row"
    assert "rows resampled (row bootstrap)" in (out / "report.md").read_text()
