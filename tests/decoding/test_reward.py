"""Gold reward (reference B.4): logit[positive] - logit[negative] of a sequence classifier on prompt + response."""

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from demoscope.decoding import gold_rewards, label_index, load_reward_model
from demoscope.errors import ModelError

PROMPTS = ["I really", "The film was", "Honestly", "I think"]
RESPONSES = [" liked it a lot.", " a waste of time", "", " the government should act now and then"]


@pytest.fixture(scope="module")
def classifier(guide, tmp_path_factory):
    """A tiny random 2-class Llama classifier with the tiny tokenizer, saved and loaded like a real one."""
    tok = guide.tuned.tokenizer
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, num_labels=2, pad_token_id=tok.pad_token_id, id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rm")
    LlamaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return load_reward_model(path)


def test_reward_is_the_logit_margin_per_text(classifier):
    model, tok = classifier
    got = gold_rewards(model, tok, PROMPTS, RESPONSES, batch_size=3)
    assert got.shape == (4,) and got.dtype == np.float64
    for p, r, g in zip(PROMPTS, RESPONSES, got):
        with torch.no_grad():
            logits = model(**tok(p + r, return_tensors="pt")).logits[0]
        assert g == pytest.approx(float(logits[1] - logits[0]), abs=1e-5)
    assert np.ptp(got) > 1e-4  # different texts, different rewards


def test_swapping_labels_flips_the_sign_and_names_resolve(classifier):
    model, tok = classifier
    pos = gold_rewards(model, tok, PROMPTS, RESPONSES)
    np.testing.assert_allclose(gold_rewards(model, tok, PROMPTS, RESPONSES, positive=0, negative=1), -pos)
    by_name = gold_rewards(model, tok, PROMPTS, RESPONSES, positive="POSITIVE", negative="negative")
    np.testing.assert_allclose(by_name, pos)
    assert label_index(model, "positive") == 1
    with pytest.raises(ModelError, match="no label 'joy'"):
        label_index(model, "joy")
    with pytest.raises(ModelError, match="out of range"):
        gold_rewards(model, tok, PROMPTS, RESPONSES, positive=2)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        gold_rewards(model, tok, PROMPTS[:2], RESPONSES[:1])


def test_missing_reward_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="cannot load reward model"):
        load_reward_model(tmp_path / "nothing")
