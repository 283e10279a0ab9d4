"""What the evaluate job reads: prepare's CSV and Parquet splits, a distributions file, bad files (refused before
Ray starts); the model-free baselines; atomic predictions and progress."""

import json

import numpy as np
import pandas as pd
import pytest

from demoscope.errors import ConfigError, SurveyFormatError
from demoscope.metrics import ordinal_wasserstein, uniform_baseline
from demoscope.metrics.opinion import human_distribution
from demoscope.pipelines import evaluate as evaluate_job
from demoscope.pipelines.cli import main as cli_main
from demoscope.pipelines.evaluate import EvaluateConfig
from demoscope.pipelines.prepare import write_split
from demoscope.surveys import write_distributions
from demoscope.surveys.finetuning import build_finetuning_frame, evaluation_rows

GROUPS = [("CREGION", "Northeast"), ("CREGION", "South"), ("POLPARTY", "Democrat"), ("POLPARTY", "Republican")]
KEY = ["qkey", "attribute", "group"]


def distributions(n_questions: int = 3) -> pd.DataFrame:
    """Well-formed distributions, ``n_questions`` x 4 groups, with 2..4 scored answers + 'Refused'."""
    rows = []
    for q in range(n_questions):
        k = 2 + q % 3
        for i, (attribute, group) in enumerate(GROUPS):
            raw = np.arange(1.0, k + 1) ** (i % 3) + q
            rows.append({"qkey": f"Q{q}_W26", "attribute": attribute, "group": group, "question": f"Question {q}?",
                         "options": [f"opt {j}" for j in range(k)] + ["Refused"],
                         "responses": (raw / raw.sum()).tolist(), "refusal_rate": 0.02 * i,
                         "ordinal": [float(j + 1) for j in range(k)]})
    return pd.DataFrame(rows)


def predictions(out) -> pd.DataFrame:
    return pd.read_parquet(out / "predictions")


# Without Ray


def test_distributions_file_becomes_sorted_rendered_rows_with_exclusions(tmp_path):
    dist = distributions(4)
    write_distributions(dist.sample(frac=1, random_state=0), tmp_path)
    rows, notes = evaluation_rows(tmp_path / "distributions.csv", "BIO", exclude_questions=["Q3_W26"])
    expected = build_finetuning_frame(dist[dist.qkey != "Q3_W26"], "BIO", shuffle=False)
    pd.testing.assert_frame_equal(rows, expected.sort_values(KEY).reset_index(drop=True))
    assert notes == []


def test_baselines_only_other_groups_is_the_mean_of_the_other_groups(prepared, tmp_path, capsys):
    config = EvaluateConfig(test_file=str(prepared["test"]), baselines_only=True, out=str(tmp_path), n_boot=50)
    assert evaluate_job.run(config) == 0
    result = predictions(tmp_path)
    test = pd.read_parquet(prepared["test"])
    assert (len(result) == len(test)
            and list(result[KEY].itertuples(index=False)) == sorted(test[KEY].itertuples(index=False)))
    for row in result.itertuples():
        # The plain computation: the unweighted mean over every other (attribute, group) row of the question.
        others = test[(test.qkey == row.qkey) & ((test.attribute != row.attribute) | (test.group != row.group))]
        expected = np.mean([human_distribution(d, o) for d, o in zip(others.output_dist, others.ordinal)], axis=0)
        human = human_distribution(row.output_dist, row.ordinal)
        assert np.allclose(row.dist_other_groups, expected)
        assert row.wd_other_groups == pytest.approx(ordinal_wasserstein(human, expected, row.ordinal), nan_ok=True)
        assert row.wd_uniform == pytest.approx(ordinal_wasserstein(human, uniform_baseline(row.ordinal), row.ordinal),
                                               nan_ok=True)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["system"] for r in metrics["overall"]] == ["other_groups", "uniform", "noise_floor"]
    assert metrics["overall"][0]["mean"] == pytest.approx(result.wd_other_groups.mean())
    assert "scoring" not in capsys.readouterr().out  # nothing was scored by a model
    report = (tmp_path / "report.md").read_text()
    assert "No model: baselines only." in report and "mean of the human distributions of every other" in report


def test_baselines_only_reads_a_distributions_file_directly(tmp_path):
    write_distributions(distributions(), tmp_path / "agg")
    argv = ["evaluate", "--test-file", str(tmp_path / "agg" / "distributions.parquet"), "--baselines-only",
            "--out", str(tmp_path / "eval"), "n_boot=20"]
    assert cli_main(argv) == 0
    result = predictions(tmp_path / "eval")
    assert len(result) == 12 and result.wd_other_groups.notna().all()
    assert all(len(d) == len(o) + 1 for d, o in zip(result.output_dist, result.ordinal))


def test_bad_distributions_file_exits_2_before_ray_with_one_line(tmp_path, capsys, monkeypatch):
    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started before the input was checked")

    monkeypatch.setattr(evaluate_job, "init_ray", no_ray)
    dist = distributions()
    dist.at[5, "responses"] = [-0.5, 1.5]
    write_distributions(dist, tmp_path / "agg")
    path = tmp_path / "agg" / "distributions.csv"
    assert cli_main(["evaluate", "--test-file", str(path), "--out", str(tmp_path / "eval")]) == 2
    assert capsys.readouterr().err == (
        f"demoscope evaluate: error: {path}, column 'responses': expected finite shares >= 0; 1 of 12 row(s) fail: "
        "row 5 (line 7, qkey 'Q1_W26', group 'South'): got [-0.5, 1.5]\n")
    assert not (tmp_path / "eval").exists()


def test_bad_split_and_unknown_tables_are_refused(tmp_path):
    split = build_finetuning_frame(distributions(), "QA", shuffle=False)
    split.at[2, "ordinal"] = [1.0, 2.0, 3.0]  # three positions for two answers
    write_split(split, tmp_path / "s")
    with pytest.raises(SurveyFormatError, match=r"s.csv, column 'ordinal': .* row 2 \(line \d+, qkey 'Q0_W26', group"):
        evaluate_job.run(EvaluateConfig(test_file=str(tmp_path / "s.csv"), out=str(tmp_path / "o")))
    pd.DataFrame({"prompt": ["x"]}).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(SurveyFormatError, match="neither a prepared split .* nor distributions"):
        evaluate_job.run(EvaluateConfig(test_file=str(tmp_path / "other.csv"), baselines_only=True,
                                        out=str(tmp_path / "o")))
    with pytest.raises(ConfigError, match="does not exist"):
        evaluate_job.run(EvaluateConfig(test_file=str(tmp_path / "missing.csv"), out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


# On a local Ray


@pytest.mark.ray
def test_csv_split_with_multiline_prompts_scores_like_the_parquet_split(local_ray, prepared, tmp_path, capsys):
    test = pd.read_parquet(prepared["test"])
    assert test.input_prompt.str.contains("\n").all()
    write_split(test, tmp_path / "split")  # as `demoscope prepare` writes them
    write_split(test.iloc[::-1], tmp_path / "reversed")  # the same rows in another order
    for name in ("split.csv", "reversed.parquet"):
        config = EvaluateConfig(test_file=str(tmp_path / name), out=str(tmp_path / name.replace(".", "-")), n_boot=50)
        assert evaluate_job.run(config) == 0
    from_csv, from_parquet = predictions(tmp_path / "split-csv"), predictions(tmp_path / "reversed-parquet")
    assert list(from_csv.columns) == [
        "qkey", "attribute", "group", "output_dist", "ordinal", "n", "n_eff", "dist_model", "wd_model",
        "dist_model_unsteered", "wd_model_unsteered", "wd_uniform", "tv_model", "js_model", "kl_model", "tv_uniform",
        "js_uniform", "kl_uniform", "wd_noise_floor", "tv_noise_floor"]
    assert len(from_csv) == len(test)
    pd.testing.assert_frame_equal(from_csv, from_parquet)  # same numbers, same (sorted) order
    assert list(from_csv[KEY].itertuples(index=False)) == sorted(from_csv[KEY].itertuples(index=False))
    metrics = [json.loads((tmp_path / f / "metrics.json").read_text()) for f in ("split-csv", "reversed-parquet")]
    assert metrics[0]["overall"] == metrics[1]["overall"] and metrics[0]["per_group"] == metrics[1]["per_group"]
    printed = capsys.readouterr().out
    assert f"scoring: {len(test)}/{len(test)} rows (100%)" in printed  # progress without -v


@pytest.mark.ray
def test_distributions_file_is_scored_with_its_steered_prompts(local_ray, tmp_path):
    from demoscope.models import TransformersOptionScorer, load_causal_lm
    from demoscope.models.names import resolve_model

    dist = distributions()
    write_distributions(dist, tmp_path / "agg")
    config = EvaluateConfig(test_file=str(tmp_path / "agg" / "distributions.parquet"), steering="PORTRAY",
                            out=str(tmp_path / "eval"), n_boot=50)
    assert evaluate_job.run(config) == 0
    result = predictions(tmp_path / "eval")
    rendered = build_finetuning_frame(dist, "PORTRAY", shuffle=False).sort_values(KEY).reset_index(drop=True)
    assert result[KEY].equals(rendered[KEY])
    scorer = TransformersOptionScorer(*load_causal_lm(resolve_model("tiny:llama")))
    expected = scorer.score(list(rendered.input_prompt), [len(o) for o in rendered.ordinal])
    for got, want in zip(result.dist_model, expected):
        assert np.allclose(got, want, atol=1e-5)


@pytest.mark.ray
def test_a_run_failing_in_the_workers_leaves_the_previous_output_and_no_debris(local_ray, prepared, random_adapter,
                                                                               tmp_path):
    out = tmp_path / "eval"
    assert evaluate_job.run(EvaluateConfig(test_file=str(prepared["test"]), baselines_only=True, out=str(out),
                                           n_boot=20)) == 0
    before = {p.name: p.read_bytes() for p in (out / "predictions").iterdir()}
    config_before = (out / "config.yaml").read_text()
    broken = tmp_path / "broken-adapter"  # a valid config, unreadable weights: fails inside the scoring actors
    broken.mkdir()
    (broken / "adapter_config.json").write_text((random_adapter / "adapter_config.json").read_text())
    (broken / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(Exception, match="safetensors|header|deserializ"):
        evaluate_job.run(EvaluateConfig(test_file=str(prepared["test"]), adapter=str(broken), out=str(out), n_boot=20))
    assert {p.name: p.read_bytes() for p in (out / "predictions").iterdir()} == before
    assert (out / "config.yaml").read_text() == config_before
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


@pytest.mark.ray
def test_more_replicas_than_the_local_ray_has_is_refused_with_what_fits(local_ray, prepared, tmp_path):
    cpus = int(local_ray.cluster_resources()["CPU"])
    config = EvaluateConfig(test_file=str(prepared["test"]), replicas=cpus + 1, out=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match=rf"evaluate: the scoring asks {cpus + 1} CPUs "
                                          rf"\(replicas={cpus + 1} x 1 CPU\); "
                                          rf"this Ray has {cpus}; use replicas={cpus} or --address a bigger cluster"):
        evaluate_job.run(config)
    assert not (tmp_path / "o" / "predictions").exists()
