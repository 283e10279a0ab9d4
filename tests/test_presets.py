"""Every YAML preset in configs/ loads into its job's config."""

from pathlib import Path

import pytest

from demoscope.config import EvaluateConfig, load_config
from demoscope.config.train import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted((CONFIGS / "subpop").glob("*.yaml")) + [CONFIGS / "tiny-demo.yaml"], ids=lambda p: p.name)
def test_training_presets_load(path):
    config = load_config(TrainConfig, path)
    assert config.lora.r == 8 and config.lora.alpha == 32 and config.lora.target_modules == ["q_proj", "v_proj"]
    if "subpop" in str(path):
        assert config.use_gpu and config.strategy == "fsdp" and config.lr == 2e-4 and config.epochs == 50
        assert config.batch_size * config.num_workers == 128


def test_subpop_eval_preset_excludes_the_five_high_relevance_questions():
    config = load_config(EvaluateConfig, CONFIGS / "evaluate" / "subpop-eval.yaml", flags={"test_file": "x.parquet"})
    assert config.exclude_questions == ["marital", "satjob", "attend", "relpersn", "othlang"]


@pytest.mark.parametrize("path", sorted((CONFIGS / "politune").glob("*.yaml")), ids=lambda p: p.name)
def test_politune_presets_load_with_the_recipe_settings(path):
    config = load_config(TrainConfig, path)
    assert config.lora.r == 16 and config.lora.alpha == 32 and "lm_head" in config.lora.target_modules
    if config.objective == "dpo":
        assert (config.lr, config.weight_decay, config.beta, config.epochs) == (5e-4, 0.05, 0.1, 4)
        assert config.batch_size * config.grad_accum == 64 and config.max_chars == 1024
    else:
        assert (config.lr, config.weight_decay, config.epochs, config.batch_size * config.grad_accum) == (3e-4, 0.01, 2, 64)


def test_weak_to_strong_preset_has_the_seeds_generation_settings():
    from demoscope.config import GenerateConfig
    from demoscope.decoding import DecodingMethod

    config = load_config(GenerateConfig, CONFIGS / "w2s" / "imdb-gpt2-xl.yaml")
    assert (config.temperature, config.top_k, config.top_p, config.max_new_tokens, config.seed, config.limit) == (0.7, 50, 1.0, 50, 1, 200)
    labels = [DecodingMethod.parse(m).label for m in config.methods]
    assert labels == ["base", "bon16", "bon32", "cbs-w4k4l5", "eft-beta1.0"]
    assert config.large_template == "Here is a movie review from imdb: {raw_prompt}"
