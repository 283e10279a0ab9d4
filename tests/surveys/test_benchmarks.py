"""Published benchmarks in their own formats: fixtures written here exactly as the releases lay them out."""

import json

import numpy as np
import pandas as pd
import pytest

from demoscope.errors import ConfigError
from demoscope.surveys.benchmarks import COUNTRY, load_benchmark, read_benchmark_file
from demoscope.surveys.validation import check_distributions

SUBPOP_ROWS = [  # SubPOP's processed columns; list cells as SubPOP's CSVs write them (Python literals in strings)
    {"qkey": "GUNKILLF2_W26", "attribute": "POLPARTY", "group": "Democrat", "question": "How likely is it?",
     "options": "['Very likely', 'Somewhat likely', 'Not likely', 'Refused']", "responses": "[0.5, 0.3, 0.2]",
     "refusal_rate": 0.01, "ordinal": "[1.0, 2.0, 3.0]"},
    {"qkey": "GUNKILLF2_W26", "attribute": "POLPARTY", "group": "Republican", "question": "How likely is it?",
     "options": "['Very likely', 'Somewhat likely', 'Not likely', 'Refused']", "responses": "[0.2, 0.3, 0.5]",
     "refusal_rate": 0.02, "ordinal": "[1.0, 2.0, 3.0]"},
]

GOQA_ROWS = [  # GlobalOpinionQA's CSV: selections is a defaultdict repr, options a list literal
    {"question": "Do you think people can be trusted?", "options": "['Most people', 'Need to be careful', "
     "\"Don't know/Refused\"]", "selections": "defaultdict(<class 'list'>, {'Nigeria': [0.2, 0.7, 0.1], "
     "'Japan': [0.4, 0.6, 0.0]})", "source": "WVS"},
    {"question": "How good is the economy?", "options": "['Very good', 'Somewhat good', 'Somewhat bad', 'Very bad']",
     "selections": "defaultdict(<class 'list'>, {'Brazil': [0.1, 0.2, 0.3, 0.4]})", "source": "GAS"},
]


def test_subpop_release_jsonl_reads_as_distributions(tmp_path):
    path = tmp_path / "subpop-eval.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in SUBPOP_ROWS))
    frame = read_benchmark_file(path)
    check_distributions(frame, str(path))  # what prepare and evaluate demand of any distributions
    assert frame["responses"].tolist() == [[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]]
    assert frame["options"].iloc[0][-1] == "Refused" and frame["refusal_rate"].tolist() == [0.01, 0.02]


def test_global_opinions_become_one_row_per_question_and_country(tmp_path):
    path = tmp_path / "global_opinions.csv"
    pd.DataFrame(GOQA_ROWS).to_csv(path, index=False)
    frame = read_benchmark_file(path)
    check_distributions(frame, str(path))
    assert list(frame["group"]) == ["Nigeria", "Japan", "Brazil"] and set(frame["attribute"]) == {COUNTRY}
    nigeria = frame.iloc[0]
    # The non-answer leaves the options and becomes the refusal share; the rest is renormalised.
    assert nigeria["options"] == ["Most people", "Need to be careful", "Refused"]
    np.testing.assert_allclose(nigeria["responses"], [0.2 / 0.9, 0.7 / 0.9])
    assert nigeria["refusal_rate"] == pytest.approx(0.1) and nigeria["ordinal"] == [1.0, 2.0]
    brazil = frame.iloc[2]
    assert brazil["refusal_rate"] == 0.0 and brazil["responses"] == [0.1, 0.2, 0.3, 0.4]
    assert frame["qkey"].tolist() == ["GOQA_0000", "GOQA_0000", "GOQA_0001"]


def test_names_use_the_local_copy_where_the_release_puts_it_or_say_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"benchmark subpop-eval: no local copy .* the hub is off .*"
                                          r"download SubPOP-Eval from https://huggingface.co/datasets/jjssuh/subpop"):
        load_benchmark("subpop-eval", root=tmp_path)
    folder = tmp_path / "data" / "subpop-eval" / "processed"
    folder.mkdir(parents=True)
    (folder / "subpop_eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in SUBPOP_ROWS))
    name, frame = load_benchmark("subpop-eval", root=tmp_path)
    assert name == "subpop-eval" and len(frame) == 2
    with pytest.raises(ConfigError, match="unknown benchmark 'opinionsqa'"):
        load_benchmark("opinionsqa", root=tmp_path)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"qkey": ["q"]}).to_csv(bad, index=False)
    with pytest.raises(ConfigError, match="lacks SubPOP's column"):
        load_benchmark(str(bad))


def test_evaluate_scores_a_benchmark_file_steered_by_country(tmp_path):
    from demoscope.pipelines import evaluate as evaluate_job
    from demoscope.pipelines.evaluate import EvaluateConfig
    from demoscope.surveys.finetuning import evaluation_rows

    path = tmp_path / "global_opinions.csv"
    pd.DataFrame(GOQA_ROWS).to_csv(path, index=False)
    result = evaluate_job.evaluate(EvaluateConfig(benchmark=str(path), baselines_only=True, out=str(tmp_path / "o"),
                                                  n_boot=20))
    written = tmp_path / "o" / "benchmark" / "global_opinions" / "distributions.parquet"
    assert written.is_file() and result.metrics["rows"] == 3 and result.metrics["questions"] == 2
    rows, _ = evaluation_rows(written, "PORTRAY")
    nigeria = rows[rows.group == "Nigeria"].iloc[0]
    assert nigeria.input_prompt.startswith("Answer the following question as if you lived in Nigeria.\n\n")
    assert "A. Most people\nB. Need to be careful\n" in nigeria.input_prompt
    with pytest.raises(ValueError, match="give one input"):
        EvaluateConfig(benchmark=str(path), test_file=str(path))
