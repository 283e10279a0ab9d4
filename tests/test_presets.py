"""Every YAML preset in configs/ loads into its job's config."""

from pathlib import Path

import pytest

from demoscope.config import load_config
from demoscope.pipelines.evaluate import EvaluateConfig
from demoscope.pipelines.train import load_train_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted((CONFIGS / "subpop").glob("*.yaml")) + [CONFIGS / "tiny-demo.yaml"],
                         ids=lambda p: p.name)
def test_training_presets_load(path):
    config = load_train_config(path)
    assert config.lora.r == 8 and config.lora.alpha == 32 and config.lora.target_modules == ["q_proj", "v_proj"]
    if "subpop" in str(path):
        assert config.use_gpu and config.strategy == "fsdp" and config.lr == 2e-4 and config.epochs == 50
        assert config.batch_size * config.num_workers == 128


def test_subpop_eval_preset_excludes_the_five_high_relevance_questions():
    config = load_config(EvaluateConfig, CONFIGS / "evaluate" / "subpop-eval.yaml", flags={"test_file": "x.parquet"})
    assert config.exclude_questions == ["marital", "satjob", "attend", "relpersn", "othlang"]


@pytest.mark.parametrize("path", sorted((CONFIGS / "politune").glob("*.yaml")), ids=lambda p: p.name)
def test_politune_presets_load_with_the_recipe_settings(path):
    config = load_train_config(path)
    assert config.lora.r == 16 and config.lora.alpha == 32 and "lm_head" in config.lora.target_modules
    assert config.prompt_template == "alpaca-chat"  # the recipe's composition: Alpaca text in the chat template
    if config.objective == "dpo":
        assert (config.lr, config.weight_decay, config.beta, config.epochs) == (5e-4, 0.05, 0.1, 4)
        assert config.batch_size * config.grad_accum == 64 and config.max_chars == 1024
        assert config.warmup_steps == 100  # num_warmup_steps of lora_dpo_single_device
    else:
        assert ((config.lr, config.weight_decay, config.epochs, config.batch_size * config.grad_accum)
                == (3e-4, 0.01, 2, 64))


def test_weak_to_strong_preset_has_the_seeds_generation_settings():
    from demoscope.decoding import DecodingMethod
    from demoscope.pipelines.generate import GenerateConfig

    config = load_config(GenerateConfig, CONFIGS / "w2s" / "imdb-gpt2-xl.yaml")
    assert (config.temperature, config.top_k, config.top_p, config.max_new_tokens, config.seed,
            config.limit) == (0.7, 50, 1.0, 50, 1, 200)
    labels = [DecodingMethod.parse(m).label for m in config.methods]
    assert labels == ["base", "bon16", "bon32", "cbs-w4k4l5", "eft-beta1.0"]
    assert config.large_template == "Here is a movie review from imdb: {raw_prompt}"


# The models the seed systems name (their READMEs and configs): SubPOP's bases, PoliTune's two instruct models,
# the weak-to-strong seed's GPT-2 family and reward model; plus the project's own offline models.
SEED_MODELS = {
    "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf", "meta-llama/Meta-Llama-3-70B", "mistralai/Mistral-7B-v0.1",
    "meta-llama/Meta-Llama-3-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.2",
    "openai-community/gpt2-xl", "lvwerra/gpt2-imdb", "lvwerra/distilbert-imdb",
}
MODEL_KEYS = ("model", "untuned", "tuned", "reward_model", "guide_model", "teacher", "student")
HUB_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*"


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_preset_names_a_real_model(path):
    import re

    import yaml

    settings = yaml.safe_load(path.read_text()) or {}
    for key in MODEL_KEYS:
        value = settings.get(key)
        if not isinstance(value, str) or value.startswith(("runs/", "tiny:", "smollm2:")):
            continue  # a run's own output folder, or an offline model of the factory
        assert re.fullmatch(HUB_ID, value), f"{key}: {value!r} is not a Hugging Face id (owner/name)"
        assert value in SEED_MODELS, f"{key}: {value!r} is none of the seeds' models"
