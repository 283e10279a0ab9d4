"""The generate job on the local Ray: every method over a prompt set, guidance and gold rewards, the report."""

import numpy as np
import pandas as pd
import pytest

from demoscope.decoding import Guide, SamplingParams, generate, gold_rewards, load_reward_model
from demoscope.errors import ConfigError
from demoscope.models import load_causal_lm
from demoscope.models.names import resolve_model
from demoscope.pipelines import generate as generate_job
from demoscope.pipelines.generate import GenerateConfig

PROMPTS = ["I watched this film and", "The acting was", "My family thought the story", "Halfway through, the plot"]


def config(tmp_path, adapter, **overrides) -> GenerateConfig:
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    settings = dict(prompts=str(tmp_path / "prompts.txt"), model="tiny:llama", tuned="tiny:llama",
                    tuned_adapter=str(adapter), reward_model="tiny:classifier", max_new_tokens=6, batch_size=2,
                    methods=["base", "bon:3", "cbs:2,2,3", "eft:1.0"], out=str(tmp_path / "out"))
    return GenerateConfig(**{**settings, **overrides})


@pytest.mark.ray
def test_every_method_runs_on_ray_data_and_matches_the_library(local_ray, random_adapter, tmp_path, capsys):
    cfg = config(tmp_path, random_adapter)
    result = generate_job.generate_all(cfg)
    assert f"generating: {len(PROMPTS)}/{len(PROMPTS)} prompts (100%)" in capsys.readouterr().out  # progress without -v
    out = tmp_path / "out"
    rows = pd.read_parquet(out / "generations")
    assert len(rows) == len(PROMPTS) * 4
    assert set(rows["method"]) == {"base", "bon3", "cbs-w2k2l3", "eft-beta1.0"}
    assert rows["guidance"].notna().all() and rows["gold_reward"].notna().all()
    # Same settings in-process give the same responses: seeds follow the prompt, not the Ray sharding.
    large = load_causal_lm(resolve_model("tiny:llama"))
    small, tokenizer = load_causal_lm(resolve_model("tiny:llama"), adapters={"tuned": str(random_adapter)})
    guide = Guide.from_adapter(small, "tuned", tokenizer)
    expected = generate("cbs:2,2,3", PROMPTS, large, guide, SamplingParams(max_new_tokens=6))
    got = rows[rows.method == "cbs-w2k2l3"].set_index("prompt")
    for g in expected:
        assert got.loc[g.prompt, "response"] == g.text
        assert got.loc[g.prompt, "guidance"] == pytest.approx(g.guidance, abs=1e-5)
    classifier, reward_tok = load_reward_model(resolve_model("tiny:classifier"))
    recomputed = gold_rewards(classifier, reward_tok, list(rows.prompt), list(rows.response))
    assert np.allclose(rows["gold_reward"], recomputed, atol=1e-5)
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    pd.testing.assert_frame_equal(result.summary.set_index("method"), summary, check_dtype=False)
    assert summary.loc["bon3", "gold_reward"] == pytest.approx(rows[rows.method == "bon3"].gold_reward.mean())
    for name in ("report.md", "rewards.png", "metrics.json", "config.yaml"):
        assert (out / name).exists()


@pytest.mark.parametrize("overrides, message", [
    ({"tuned": None, "tuned_adapter": None}, "need the small guide pair"),
    ({"tuned_adapter": None}, "give --untuned"),
    ({"methods": ["bon:x"]}, "cannot parse decoding method"),
    ({"backend": "vllm"}, "eft mixes the three models"),
    ({"large_template": "no slot"}, "must contain {raw_prompt}"),
])
def test_settings_that_cannot_work_fail_before_ray(tmp_path, random_adapter, overrides, message):
    with pytest.raises(ConfigError, match=message):
        generate_job.run(config(tmp_path, random_adapter, **overrides))


def test_prompt_files_and_their_errors(tmp_path):
    from demoscope.decoding.prompt_sets import read_prompts

    pd.DataFrame({"prompt": ["a", "b", "c"]}).to_parquet(tmp_path / "p.parquet")
    assert read_prompts(tmp_path / "p.parquet", limit=2) == ["a", "b"]
    pd.DataFrame({"text": ["a"]}).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(ConfigError, match="has no 'prompt' column"):
        read_prompts(tmp_path / "p.csv")
    (tmp_path / "p.jsonl").write_text('{"prompt": "ok"}\n{"prompt": ""}\n')
    with pytest.raises(ConfigError, match="row 1: expected a non-empty prompt"):
        read_prompts(tmp_path / "p.jsonl")
