"""The offline tiny-model factory: tokenizer invariants, from_pretrained round trip, seeding, caching."""

import re
import string
import threading

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from demoscope.models import build_tiny_model, encode_prompts, letter_token_ids, tiny_model


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_every_letter_has_one_token_with_and_one_without_a_space(arch, llama_dir, gpt2_dir):
    tok = AutoTokenizer.from_pretrained(llama_dir if arch == "llama" else gpt2_dir)
    no_space, space = letter_token_ids(tok)
    for letter, a, s in zip(string.ascii_uppercase, no_space, space):
        assert tok.encode(" " + letter, add_special_tokens=False) == [s]
        assert tok.encode("Answer:" + letter)[-1] == a and tok.decode([a]) == letter
        assert tok.encode("Answer: " + letter)[-1] == s and tok.decode([s]) == " " + letter
    assert len(set(no_space) | set(space)) == 52


def test_colon_never_merges_with_a_letter(llama_dir):
    tok = AutoTokenizer.from_pretrained(llama_dir)
    assert not [t for t in tok.get_vocab() if re.search(r":[A-Za-z]", t)]
    assert tok.convert_ids_to_tokens(tok.encode("Answer:B", add_special_tokens=False))[-2:] == [":", "B"]


def test_text_prompts_and_scorer_encoding_agree_on_bos(llama_dir):
    tok = AutoTokenizer.from_pretrained(llama_dir)
    prompt = "Question: Do you own a gun?\nA. Yes\nB. No\n\nAnswer:"
    ids = encode_prompts(tok, [prompt])[0]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok(prompt)["input_ids"] == ids  # what vLLM feeds the model for a text prompt
    assert {tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token} == {"<s>", "</s>", "<pad>", "<unk>"}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_reloads_through_from_pretrained_with_safetensors(arch, llama_dir, gpt2_dir):
    path = llama_dir if arch == "llama" else gpt2_dir
    assert (path / "model.safetensors").is_file() and not list(path.glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.vocab_size == len(tok)
    assert model.config.max_position_embeddings >= 1024
    if arch == "llama":
        assert type(model).__name__ == "LlamaForCausalLM"
        assert model.config.hidden_size // model.config.num_attention_heads == 64  # vLLM rejects head_dim 16
        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        assert {"q_proj", "v_proj"} <= names
    else:
        assert type(model).__name__ == "GPT2LMHeadModel"
    logits = model(torch.tensor([encode_prompts(tok, ["Answer:"])[0]])).logits
    assert logits.shape[-1] == len(tok) and torch.isfinite(logits).all()


def test_same_seed_gives_identical_weights_and_another_seed_does_not(llama_dir, tmp_path):
    again = load_file(build_tiny_model(tmp_path / "again", seed=0) / "model.safetensors")
    other = load_file(build_tiny_model(tmp_path / "other", seed=1) / "model.safetensors")
    first = load_file(llama_dir / "model.safetensors")
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["model.embed_tokens.weight"], other["model.embed_tokens.weight"])
    assert (tmp_path / "again" / "tokenizer.json").read_text() == (llama_dir / "tokenizer.json").read_text()


def test_tiny_model_builds_once_into_the_cache_even_when_two_callers_race(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMOSCOPE_CACHE", str(tmp_path))
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(tiny_model("gpt2", seed=3))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = tmp_path / "tiny-models" / "gpt2-s3-v1"
    assert results == [expected, expected]
    assert sorted(p.name for p in expected.parent.iterdir()) == ["gpt2-s3-v1"]  # no temporary folders left
    stamp = (expected / "model.safetensors").stat().st_mtime_ns
    assert tiny_model("gpt2", seed=3) == expected
    assert (expected / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    AutoModelForCausalLM.from_pretrained(expected, use_safetensors=True)


def test_tiny_classifier_is_a_two_label_sequence_classifier():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from demoscope.models.names import resolve_model

    path = resolve_model("tiny:classifier")
    model = AutoModelForSequenceClassification.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    logits = model(**tokenizer(["a fine day", "rain again and again"], return_tensors="pt", padding=True)).logits
    assert logits.shape == (2, 2) and model.config.label2id == {"NEGATIVE": 0, "POSITIVE": 1}
