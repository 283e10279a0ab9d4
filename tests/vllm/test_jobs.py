"""The Ray layers with the real vLLM backend: evaluate and distill-opinions on Ray Data, the Serve app's /v1/opinions.

Each job starts its own engine inside a Ray actor (a Ray Data UDF or a Serve
replica), as on a GPU cluster; the numbers are checked against the
Transformers scorer in this process within the scorer tests' tolerance.
"""

import json
import socket

import numpy as np
import pandas as pd
import pytest
import requests

pytest.importorskip("vllm")

from demoscope.models import TransformersOptionScorer, load_causal_lm  # noqa: E402
from demoscope.models.names import resolve_model  # noqa: E402
from demoscope.pipelines import distill_opinions as distill_job  # noqa: E402
from demoscope.pipelines import evaluate as evaluate_job  # noqa: E402
from demoscope.pipelines.distill_opinions import OpinionDistillConfig  # noqa: E402
from demoscope.pipelines.evaluate import EvaluateConfig  # noqa: E402
from demoscope.serve.config import ServeConfig  # noqa: E402
from demoscope.surveys.item_prompts import item_prompt  # noqa: E402

from .test_option_scorer import TOLERANCE  # noqa: E402

pytestmark = pytest.mark.ray


def test_evaluate_scores_with_vllm_as_transformers_does(local_ray, prepared, tiny_adapters, tmp_path):
    adapter = tiny_adapters["left"]
    config = EvaluateConfig(test_file=str(prepared["test"]), model="tiny:llama", adapter=adapter, backend="vllm",
                            out=str(tmp_path / "exact"), n_boot=50)
    assert evaluate_job.run(config) == 0
    predictions = pd.read_parquet(tmp_path / "exact" / "predictions")
    test = pd.read_parquet(prepared["test"])
    assert len(predictions) == len(test) and "missed_tuned" not in predictions  # exact: nothing to report
    model, tok = load_causal_lm(resolve_model("tiny:llama"), adapters={"adapter": adapter}, device="cpu")
    merged = predictions.merge(test[["qkey", "group", "input_prompt"]], on=["qkey", "group"])
    n_options = [len(o) for o in merged.ordinal]
    for system, name in (("tuned", "adapter"), ("base", None)):
        want = TransformersOptionScorer(model, tok, adapter=name).score(list(merged.input_prompt), n_options)
        got = [np.asarray(d) for d in merged[f"dist_{system}"]]
        assert max(float(np.abs(a - b).max()) for a, b in zip(got, want)) < TOLERANCE, system
    assert "## Steerability" in (tmp_path / "exact" / "report.md").read_text()

    # SubPOP's rule with a tiny k: letters fall outside, and the report says how often and how much.
    narrow = config.model_copy(update={"adapter": None, "letter_logprobs": "top-k", "top_k": 3, "steerability": False,
                                       "out": str(tmp_path / "top3")})
    assert evaluate_job.run(narrow) == 0
    missed = pd.read_parquet(tmp_path / "top3" / "predictions")["missed_model"]
    coverage = json.loads((tmp_path / "top3" / "metrics.json").read_text())["letter_coverage"]["model"]
    assert 0 < coverage["incomplete_share"] == pytest.approx((missed > 0).mean())
    assert "outside the top 3" in (tmp_path / "top3" / "report.md").read_text()


def test_distill_opinions_relabels_and_evaluates_with_vllm(local_ray, prepared, tiny_adapters, tmp_path):
    teacher_adapter = tiny_adapters["right"]
    config = OpinionDistillConfig(train_file=str(prepared["train"]), test_file=str(prepared["test"]),
                                  teacher="tiny:llama", teacher_adapter=teacher_adapter, student="tiny:llama@1",
                                  epochs=1, num_workers=1, n_boot=20, backend="vllm", out=str(tmp_path))
    assert distill_job.run(config) == 0
    targets = pd.read_parquet(tmp_path / "targets" / "train.parquet").head(8)
    model, tok = load_causal_lm(resolve_model("tiny:llama"), adapters={"t": teacher_adapter}, device="cpu")
    teacher = TransformersOptionScorer(model, tok, adapter="t").score(list(targets.input_prompt),
                                                                       [len(d) for d in targets.output_dist])
    for row, dist in zip(targets.itertuples(), teacher):
        expected = [*(dist[:-1] / dist[:-1].sum()), dist[-1]]  # as `prepare` writes a survey's refusal share
        assert np.abs(np.asarray(row.output_dist) - expected).max() < TOLERANCE
    student = pd.read_parquet(tmp_path / "eval-student" / "predictions")
    assert len(student) == len(pd.read_parquet(prepared["test"])) and student.wd_tuned.notna().any()
    assert len(pd.read_csv(tmp_path / "per_group.csv")) == 22


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_two_adapters_from_one_vllm_replica(local_ray, tiny_adapters):
    from ray import serve

    from demoscope.serve.app import build_app

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = ServeConfig(port=port, model="tiny:llama", adapters=tiny_adapters, backend="vllm", max_replicas=1)
    serve.run(build_app(config.model_dump(mode="json")), name="vllm", route_prefix="/")
    try:
        url = f"http://127.0.0.1:{port}"
        assert requests.get(f"{url}/v1/models", timeout=30).json()["backend"] == "vllm"
        item = {"question": "How much do you trust the federal government?",
                "options": ["A great deal", "Some", "Not too much", "Not at all"],
                "subpopulation": {"attribute": "POLPARTY", "group": "Democrat"}}
        body = {"items": [item, {**item, "adapter": "left"}, {**item, "adapter": "right"}]}
        response = requests.post(f"{url}/v1/opinions", json=body, timeout=300)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["adapter"] for r in results] == [None, "left", "right"]
        model, tok = load_causal_lm(resolve_model("tiny:llama"), adapters=tiny_adapters, device="cpu")
        prompt = item_prompt(item["question"], item["options"], "POLPARTY", "Democrat")
        for result in results:
            want = TransformersOptionScorer(model, tok, adapter=result["adapter"]).score([prompt], [4])[0]
            assert np.abs(np.asarray(result["distribution"]) - want).max() < TOLERANCE, result["adapter"]
        assert np.abs(np.subtract(results[1]["distribution"], results[2]["distribution"])).max() > 1e-2
    finally:
        serve.delete("vllm")
        serve.shutdown()
