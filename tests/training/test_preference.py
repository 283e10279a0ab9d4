"""Preference data (PoliTune format, Alpaca template, 1,024-char filter) and DPO/SFT through TRL on the tiny model."""

import json
import math

import pandas as pd
import pytest

from demoscope.errors import ConfigError
from demoscope.models import load_causal_lm
from demoscope.models.names import resolve_model
from demoscope.training.lora import LoraSettings
from demoscope.training.preference import preference_metrics, train_dpo, train_sft
from demoscope.training.preference_data import (
    ALPACA_TEMPLATE,
    filter_long_rows,
    format_prompts,
    prepare_pairs,
    read_preferences,
    synthetic_preferences,
)

LORA = LoraSettings(r=8, alpha=16, target_modules=["q_proj", "v_proj"])
QUIET = {"disable_tqdm": True}


def pairs():
    return pd.DataFrame({"prompt": ["Tax policy?", "Guns?"], "chosen": ["Tax the rich.", "Ban them."],
                         "rejected": ["Cut taxes.", "Keep them."]})


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_read_preferences_round_trips_every_format(tmp_path, suffix):
    frame = pairs().assign(extra=[1, 2])  # extra columns are dropped
    path = tmp_path / f"p{suffix}"
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")) + "\n")
    elif suffix == ".json":
        path.write_text(json.dumps(frame.to_dict("records")))
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    got = read_preferences(path)
    assert list(got.columns) == ["prompt", "chosen", "rejected"]
    assert got.to_dict("records") == pairs().to_dict("records")


def test_missing_column_names_the_file_and_column(tmp_path):
    path = tmp_path / "p.csv"
    pairs().drop(columns="rejected").to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"p\.csv.*\['rejected'\]"):
        read_preferences(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_empty_value_names_the_file_row_and_column(tmp_path, suffix):
    frame = pairs()
    frame.loc[1, "chosen"] = "  "
    path = tmp_path / f"p{suffix}"
    if suffix == ".csv":
        frame.loc[1, "chosen"] = ""  # an empty CSV cell, not NaN
        frame.to_csv(path, index=False)
    else:
        path.write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")))
    with pytest.raises(ConfigError, match=rf"p\{suffix}, row 1, column 'chosen'"):
        read_preferences(path)


def test_csv_cells_are_read_as_the_text_they_hold(tmp_path):
    path = tmp_path / "p.csv"
    cells = {"prompt": ["NA", "2024"], "chosen": ["None", "null"], "rejected": ["1", "007"]}
    pd.DataFrame(cells).to_csv(path, index=False)
    assert read_preferences(path).to_dict("list") == cells


def test_non_string_value_is_refused(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Q?", "chosen": 3, "rejected": "no"}) + "\n")
    with pytest.raises(ConfigError, match=r"row 0, column 'chosen'.*got 3"):
        read_preferences(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_weak_to_strong_seed_schema_maps_to_chosen_and_rejected(tmp_path, suffix):
    seed = pd.DataFrame({"prompt": ["I loved", "It was"], "responses": [["a great film", "dull"], ["boring", "superb"]],
                         "scores": [[2.0, -1.0], [-0.5, 1.5]], "chosen": [0, 1]})
    path = tmp_path / f"imdb{suffix}"
    {".jsonl": lambda: seed.to_json(path, orient="records", lines=True), ".parquet": lambda: seed.to_parquet(path),
     ".csv": lambda: seed.to_csv(path, index=False)}[suffix]()
    frame = read_preferences(path)
    assert frame.chosen.tolist() == ["a great film", "superb"] and frame.rejected.tolist() == ["dull", "boring"]
    seed.loc[1, "chosen"] = 2
    seed.to_json(tmp_path / "bad.jsonl", orient="records", lines=True)
    with pytest.raises(ConfigError, match="row 1: expected 'responses' with two answers and 'chosen' 0 or 1"):
        read_preferences(tmp_path / "bad.jsonl")


def test_alpaca_template_is_torchtunes_no_input_text():
    assert ALPACA_TEMPLATE.format(prompt="Discuss taxes.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nDiscuss taxes.\n\n### Response:\n"
    )
    out = format_prompts(pairs(), "alpaca")
    assert out["prompt"][1] == ALPACA_TEMPLATE.format(prompt="Guns?")
    assert pairs()["prompt"][1] == "Guns?" and out["chosen"][1] == "Ban them."  # input untouched, answers kept
    assert format_prompts(pairs(), "none").equals(pairs())


def test_chat_template_renders_one_user_turn_and_needs_a_template():
    _, tokenizer = load_causal_lm(resolve_model("tiny:llama"))
    with pytest.raises(ConfigError, match="chat template"):
        format_prompts(pairs(), "chat", tokenizer)  # the tiny tokenizer has none
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    assert format_prompts(pairs(), "chat", tokenizer)["prompt"][0] == "<user>Tax policy?<assistant>"


def test_filter_drops_exactly_rows_over_1024_characters():
    p = "p" * 24
    frame = pd.DataFrame({
        "prompt": [p, p, p, p],
        "chosen": ["c" * 1000, "c" * 1001, "c" * 10, "c" * 10],  # 1024 fits, 1025 does not
        "rejected": ["r" * 10, "r" * 10, "r" * 1000, "r" * 1001],
    })
    kept, dropped = filter_long_rows(frame)
    assert dropped == 2
    assert kept["chosen"].str.len().tolist() == [1000, 10]
    assert kept["rejected"].str.len().tolist() == [10, 1000]
    assert filter_long_rows(frame, max_chars=2000)[1] == 0


def test_long_pairs_are_measured_on_the_raw_text_before_the_template(tmp_path):
    # 1,000 raw characters fit the recipe's 1,024; with the Alpaca wrapper (~150 more) they would not.
    frame = pd.DataFrame({"prompt": ["p" * 500, "q" * 600], "chosen": ["c" * 500, "c" * 500],
                          "rejected": ["r" * 400, "r" * 400]})
    path = tmp_path / "pairs.jsonl"
    frame.to_json(path, orient="records", lines=True)
    kept = prepare_pairs(path, "alpaca", max_chars=1024)
    assert kept["prompt"].tolist() == [ALPACA_TEMPLATE.format(prompt="p" * 500)]  # the 1,100-char pair is dropped
    assert len(filter_long_rows(format_prompts(frame, "alpaca"), 1024)[0]) == 0  # the old order dropped both


def test_alpaca_chat_gives_trl_the_official_token_sequence(tmp_path):
    """PoliTune's composition on a real chat template (SmolLM2's): Alpaca text as the user turn, then the answer.

    The expected text is written out from SmolLM2's template (system turn, user turn, assistant turn, each
    closed by <|im_end|>), so this checks what TRL actually tokenizes for DPO, end-of-turn tokens included.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2:135m"))
    torch.manual_seed(0)  # a tiny random network with SmolLM2's vocabulary: only the tokenization matters here
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    data = format_prompts(pairs().head(1), "alpaca-chat", tokenizer)
    trainer = train_dpo(model, tokenizer, data, tmp_path, LORA, max_steps=1, batch_size=1, extra=QUIET)
    row = trainer.train_dataset[0]
    system = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    user = f"<|im_start|>user\n{ALPACA_TEMPLATE.format(prompt='Tax policy?')}<|im_end|>\n<|im_start|>assistant\n"
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert row["prompt_ids"] == ids(system + user)
    assert row["prompt_ids"] + row["chosen_ids"] == ids(system + user + "Tax the rich.<|im_end|>\n")
    assert row["prompt_ids"] + row["rejected_ids"] == ids(system + user + "Cut taxes.<|im_end|>\n")


def test_synthetic_pairs_are_seeded_and_swap_between_leans():
    left = synthetic_preferences(40, "left", seed=3)
    right = synthetic_preferences(40, "right", seed=3)
    assert left.equals(synthetic_preferences(40, "left", seed=3))
    assert not left.equals(synthetic_preferences(40, "left", seed=4))
    assert left["prompt"].equals(right["prompt"])
    assert left["chosen"].equals(right["rejected"]) and left["rejected"].equals(right["chosen"])
    assert left["chosen"].str.contains("public").mean() > 0.6  # left answers carry the left vocabulary
    assert not left["chosen"].str.contains("free markets|lower taxes|cut spending").any()
    assert (left["chosen"].str.split().str.len() < 40).all() and (left["rejected"].str.split().str.len() < 40).all()


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory):
    """64 synthetic left pairs, 2 epochs of DPO with PoliTune's lr 5e-4 and beta 0.1 (32 steps, ~4 s on CPU)."""
    model, tokenizer = load_causal_lm(resolve_model("tiny:llama"))
    data = format_prompts(synthetic_preferences(64, "left", seed=0), "alpaca")
    trainer = train_dpo(model, tokenizer, data, tmp_path_factory.mktemp("dpo"), LORA, beta=0.1, lr=5e-4,
                        epochs=2, batch_size=4, eval_data=data, extra=QUIET)
    return trainer, preference_metrics(trainer)


def test_dpo_loss_is_log2_at_step_0_because_policy_equals_reference(dpo_run):
    trainer, metrics = dpo_run
    # The first logged loss is the first batch's, computed before any update: LoRA B = 0, so policy == reference.
    assert metrics["step"][0] == 1
    assert metrics["loss"][0] == pytest.approx(math.log(2), abs=1e-3)
    assert metrics["rewards/margins"][0] == pytest.approx(0.0, abs=1e-6)
    assert "ref" not in trainer.model.peft_config  # the reference is the adapter-disabled network, not a copy
    assert trainer.args.activation_checkpointing is False and trainer.args.gradient_checkpointing is False
    assert trainer.args.bf16 is False and trainer.args.logging_steps == 1 and trainer.args.save_strategy == "no"


def test_dpo_learns_to_prefer_the_chosen_side(dpo_run):
    trainer, metrics = dpo_run
    assert len(metrics["loss"]) == 32
    assert metrics["loss"][-1] < 0.6
    final = trainer.evaluate()  # on the training pairs
    assert final["eval_rewards/accuracies"] >= 0.8
    assert final["eval_rewards/margins"] > 0.1
    assert final["eval_loss"] < math.log(2) - 0.1


def test_sft_lowers_the_loss_on_the_chosen_answers(tmp_path):
    model, tokenizer = load_causal_lm(resolve_model("tiny:llama"))
    data = format_prompts(synthetic_preferences(32, "left", seed=0), "alpaca")
    trainer = train_sft(model, tokenizer, data, tmp_path, LORA, lr=5e-3, epochs=2, batch_size=8, extra=QUIET)
    example = trainer.train_dataset[0]
    n_prompt = len(tokenizer(data["prompt"][0])["input_ids"])
    assert set(example["labels"][: n_prompt - 1]) == {-100}  # completion-only loss: the prompt is masked
    assert example["labels"][-1] != -100
    losses = preference_metrics(trainer)["loss"]
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < losses[0] - 0.1


def test_extra_gradient_checkpointing_alias_turns_checkpointing_on(tmp_path):
    model, tokenizer = load_causal_lm(resolve_model("tiny:llama"))
    trainer = train_sft(model, tokenizer, pairs(), tmp_path, LORA, max_steps=1,
                        extra={**QUIET, "gradient_checkpointing": True})
    assert trainer.args.activation_checkpointing is True


def test_bad_extra_field_and_double_adapter_are_config_errors(tmp_path):
    model, tokenizer = load_causal_lm(resolve_model("tiny:llama"))
    with pytest.raises(ConfigError, match="no_such_field"):
        train_dpo(model, tokenizer, pairs(), tmp_path, LORA, extra={"no_such_field": 1})
    from demoscope.training.lora import apply_lora

    with pytest.raises(ConfigError, match="already carries"):
        train_sft(apply_lora(model, LORA), tokenizer, pairs(), tmp_path, LORA)


def test_hub_dataset_name_without_hub_access_is_a_clear_error(monkeypatch):
    from demoscope.errors import ConfigError
    from demoscope.training.preference_data import read_preferences

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConfigError, match="cannot load Hugging Face dataset 'scale-lab/politune-left'"):
        read_preferences("scale-lab/politune-left")
