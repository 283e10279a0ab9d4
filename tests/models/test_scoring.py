"""TransformersOptionScorer: the §4.1 rule, equality with a naive loop, batching and order."""

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from demoscope.errors import ModelError
from demoscope.models import (
    OptionScorer,
    TransformersOptionScorer,
    encode_prompts,
    letter_token_ids,
    option_distributions,
)
from demoscope.models.prefix_sharing import common_prefix_length, positions_run
from demoscope.models.scoring import combine_letter_forms, scorers_by_adapter


def naive(model, tok, prompts, n_options):
    """One prompt at a time, full forward, the rule written out from the logits."""
    no_space, space = letter_token_ids(tok)
    dists, masses = [], []
    with torch.no_grad():
        for prompt, n in zip(prompts, n_options):
            logits = model(torch.tensor([encode_prompts(tok, [prompt])[0]])).logits[0, -1].double()
            probs = torch.softmax(logits, -1)
            p = np.array([float(probs[no_space[k]] + probs[space[k]]) for k in range(n)])
            dists.append(p / p.sum())
            masses.append(p.sum())
    return dists, np.array(masses)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_prefix_reuse_equals_a_naive_loop(arch, llama, gpt2, survey_prompts):
    model, tok = llama if arch == "llama" else gpt2
    prompts, n_options = survey_prompts
    scorer = TransformersOptionScorer(model, tok, batch_size=4)
    dists, masses = scorer.score_with_mass(prompts, n_options)
    want, want_mass = naive(model, tok, prompts, n_options)
    for got, exp, n in zip(dists, want, n_options):
        assert got.shape == (n,)
        assert got.sum() == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(got, exp, atol=1e-5)
    np.testing.assert_allclose(masses, want_mass, rtol=1e-4)
    assert scorer.zero_mass_count == 0
    assert isinstance(scorer, OptionScorer)


def test_results_do_not_depend_on_batch_size(llama, survey_prompts):
    prompts, n_options = survey_prompts
    runs = [TransformersOptionScorer(*llama, batch_size=b).score(prompts, n_options) for b in (1, 3, 7, 64)]
    runs.append(TransformersOptionScorer(*llama, batch_size=7, reuse_prefix=False).score(prompts, n_options))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_allclose(a, b, atol=1e-6)


def test_results_come_back_in_input_order(llama, survey_prompts):
    prompts, n_options = survey_prompts
    scorer = TransformersOptionScorer(*llama, batch_size=5)
    base = scorer.score(prompts, n_options)
    perm = list(range(len(prompts)))
    random.Random(0).shuffle(perm)
    shuffled = scorer.score([prompts[i] for i in perm], [n_options[i] for i in perm])
    for j, i in enumerate(perm):
        np.testing.assert_allclose(shuffled[j], base[i], atol=1e-6)


def test_rule_sums_both_letter_forms_and_renormalises_over_the_first_n_options(llama):
    model, tok = llama
    prompt = "Question: Which is best?\nA. Cats\nB. Dogs\nC. Fish\nD. Birds\n\nAnswer:"
    no_space, space = letter_token_ids(tok)
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor(encode_prompts(tok, [prompt]))).logits[0, -1].double(), -1)
    scorer = TransformersOptionScorer(model, tok)
    (d2, d4), masses = scorer.score_with_mass([prompt, prompt], [2, 4])
    p = [float(probs[no_space[k]]) + float(probs[space[k]]) for k in range(4)]
    assert masses[0] == pytest.approx(p[0] + p[1], rel=1e-5)
    assert masses[1] == pytest.approx(sum(p), rel=1e-5)
    np.testing.assert_allclose(d4, np.array(p) / sum(p), atol=1e-6)
    np.testing.assert_allclose(d2, d4[:2] / d4[:2].sum(), atol=1e-6)  # letters C, D are not in the sum
    assert d2.sum() == pytest.approx(1.0) and d4.sum() == pytest.approx(1.0)


def test_max_rule_takes_the_larger_letter_form_as_opinionqa_does(llama, monkeypatch):
    model, tok = llama
    prompt = "Question: Which is best?\nA. Cats\nB. Dogs\nC. Fish\n\nAnswer:"
    no_space, space = letter_token_ids(tok)
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor(encode_prompts(tok, [prompt]))).logits[0, -1].double(), -1)
    (dist,), (mass,) = TransformersOptionScorer(model, tok, letter_rule="max").score_with_mass([prompt], [3])
    p = [max(float(probs[no_space[k]]), float(probs[space[k]])) for k in range(3)]
    assert mass == pytest.approx(sum(p), rel=1e-5)
    np.testing.assert_allclose(dist, np.array(p) / sum(p), atol=1e-6)
    # vLLM reads the same letters the same way (its fake runs this torch model).
    from demoscope.models.vllm_fake import FakeLLM, FakeSamplingParams
    from demoscope.models.vllm_scoring import VLLMOptionScorer

    engine = VLLMOptionScorer(FakeLLM(model, tok), letter_logprobs="exact", letter_rule="max",
                              sampling_params_cls=FakeSamplingParams)
    np.testing.assert_allclose(engine.score([prompt], [3])[0], dist, atol=1e-5)
    with pytest.raises(ValueError, match="letter rule must be one of"):
        TransformersOptionScorer(model, tok, letter_rule="mean")


def test_letter_forms_combine_by_rule():
    assert combine_letter_forms([0.2, 0.5], [0.3, 0.5], [False, True], "sum").tolist() == [0.5, 0.5]  # one token once
    assert combine_letter_forms([0.2, 0.5], [0.3, 0.5], [False, True], "max").tolist() == [0.3, 0.5]


def test_zero_mass_becomes_uniform_and_is_reported():
    letter = np.zeros((2, 26))
    letter[1, :3] = [0.2, 0.1, 0.1]
    dists, masses = option_distributions(letter, [4, 3])
    np.testing.assert_array_equal(dists[0], np.full(4, 0.25))
    np.testing.assert_allclose(dists[1], [0.5, 0.25, 0.25])
    np.testing.assert_allclose(masses, [0.0, 0.4])


def test_shared_prefix_runs_once_and_only_suffixes_run_batched(llama, survey_prompts, monkeypatch):
    model, tok = llama
    prompts = survey_prompts[0][:5]  # one steering prefix, five questions
    scorer = TransformersOptionScorer(model, tok, batch_size=8)
    widths = []
    real_forward = model.forward

    def spy(*args, **kwargs):
        widths.append(tuple(kwargs["input_ids"].shape))
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    scorer.score(prompts, [2] * 5)
    ids = encode_prompts(tok, prompts)
    prefix, *rest = widths
    assert prefix[0] == 1 and prefix[1] >= 40  # the steering prefix, once
    assert rest[-1][0] >= 2  # questions batched below it
    assert sum(rows * width for rows, width in widths) == positions_run(ids, 8)[0] < sum(map(len, ids)) - 3 * 40


def test_bad_inputs_and_merging_tokenizers_raise(llama):
    scorer = TransformersOptionScorer(*llama)
    with pytest.raises(ValueError, match="2 prompts but 1"):
        scorer.score(["a", "b"], [2])
    with pytest.raises(ValueError, match="between 1 and 26"):
        scorer.score(["a"], [27])
    assert scorer.score([], []) == []

    class Merging:  # a tokenizer that merges ":A" into one token
        def encode(self, text, add_special_tokens=False):
            return [1, 2] if text.endswith(":A") else [1, 3]

        def decode(self, ids):
            return {2: ":A", 3: " A"}.get(ids[0], "?")

    with pytest.raises(ModelError, match="merged"):
        letter_token_ids(Merging(), n=1)


def test_option_scorers_give_tuned_and_base_on_one_transformers_model(llama_dir, random_adapter, survey_prompts):
    from demoscope.models.scoring import option_scorers

    prompts, n_options = survey_prompts
    plain = option_scorers(str(llama_dir), None, "transformers")
    pair = option_scorers(str(llama_dir), str(random_adapter), "transformers", compare_base=True)
    assert list(plain) == ["model"] and list(pair) == ["tuned", "base"]
    base, tuned, alone = (s.score(prompts, n_options) for s in (pair["base"], pair["tuned"], plain["model"]))
    for b, a in zip(base, alone):
        np.testing.assert_allclose(b, a, atol=1e-6)  # the adapter switched off is the plain model
    assert max(np.abs(t - b).max() for t, b in zip(tuned, base)) > 1e-3  # the adapter changes answers


def test_option_scorers_serve_the_adapter_as_a_lora_request_on_one_vllm_engine(llama, adapter_dir, monkeypatch):
    from demoscope.models.scoring import option_scorers
    from demoscope.models.vllm_fake import FakeLLM, FakeLoRARequest, FakeSamplingParams
    from demoscope.models.vllm_scoring import VLLMOptionScorer

    model, tok = llama
    engines = []

    # vLLM's engine start, faked over torch
    def create(path, adapters=None, letter_logprobs="auto", top_k=128, letter_rule="sum"):
        engines.append((adapters, letter_logprobs, top_k))
        return VLLMOptionScorer(FakeLLM(model, tok, enable_lora=True), letter_logprobs=letter_logprobs, top_k=top_k,
                                letter_rule=letter_rule,
                                sampling_params_cls=FakeSamplingParams, lora_request_cls=FakeLoRARequest)

    monkeypatch.setattr(VLLMOptionScorer, "create", staticmethod(create))
    scorers = option_scorers("any/model", str(adapter_dir), "vllm", compare_base=True, letter_logprobs="top-k",
                             top_k=64)
    assert engines == [({"adapter": str(adapter_dir)}, "top-k", 64)] and list(scorers) == ["tuned", "base"]
    assert scorers["tuned"].llm is scorers["base"].llm  # one engine, the adapter per request
    assert scorers["tuned"].lora_request.lora_path == str(adapter_dir.resolve())
    assert scorers["base"].lora_request is None and scorers["tuned"].mode == "top-k"


def plain_common_prefix(a, b) -> int:
    """The definition itself: the largest k with a[:k] == b[:k]."""
    return max(k for k in range(min(len(a), len(b)) + 1) if list(a[:k]) == list(b[:k]))


_ids = st.lists(st.integers(0, 3), max_size=12)  # a small alphabet, so prefixes often agree


@settings(max_examples=300, deadline=None)
@given(a=_ids, b=_ids, shared=_ids, as_tuple=st.booleans())
def test_common_prefix_length_is_the_longest_agreeing_prefix(a, b, shared, as_tuple):
    a, b = shared + a, shared + b
    got = common_prefix_length(tuple(a) if as_tuple else a, b)  # any sequences, not only lists
    assert got == plain_common_prefix(a, b) == common_prefix_length(b, a)
    assert got >= len(shared)


def test_scorers_by_adapter_share_one_transformers_model(llama_dir, adapter_dir, random_adapter, survey_prompts):
    """The serving case: the base model plus several named adapters on one PEFT model."""
    from demoscope.models import load_causal_lm

    prompts, n_options = survey_prompts
    scorers = scorers_by_adapter(str(llama_dir), {"a": str(adapter_dir), "b": str(random_adapter)}, "transformers",
                                 batch_size=4)
    assert list(scorers) == [None, "a", "b"]
    assert all(s.model is scorers[None].model and s.lm.batch_size == 4 for s in scorers.values())
    got = {name: s.score(prompts, n_options) for name, s in scorers.items()}
    for name, adapters in ((None, None), ("a", {"a": str(adapter_dir)}), ("b", {"b": str(random_adapter)})):
        alone = TransformersOptionScorer(*load_causal_lm(str(llama_dir), adapters=adapters), adapter=name)
        for x, y in zip(got[name], alone.score(prompts, n_options)):
            np.testing.assert_allclose(x, y, atol=1e-6)  # each adapter answers as if loaded alone
    assert max(np.abs(x - y).max() for x, y in zip(got["a"], got["b"])) > 1e-3


def test_scorers_by_adapter_put_every_adapter_on_one_vllm_engine(llama, adapter_dir, random_adapter, monkeypatch):
    from demoscope.models.vllm_fake import FakeLLM, FakeLoRARequest, FakeSamplingParams
    from demoscope.models.vllm_scoring import VLLMOptionScorer

    model, tok = llama
    engines = []

    # vLLM's engine start, faked over torch
    def create(path, adapters=None, letter_logprobs="auto", top_k=128, letter_rule="sum"):
        engines.append((path, adapters, letter_logprobs, top_k))
        return VLLMOptionScorer(FakeLLM(model, tok, enable_lora=True), letter_logprobs=letter_logprobs, top_k=top_k,
                                letter_rule=letter_rule,
                                sampling_params_cls=FakeSamplingParams, lora_request_cls=FakeLoRARequest)

    monkeypatch.setattr(VLLMOptionScorer, "create", staticmethod(create))
    adapters = {"a": str(adapter_dir), "b": str(random_adapter)}
    scorers = scorers_by_adapter("any/model", adapters, "vllm", letter_logprobs="top-k")
    assert engines == [("any/model", adapters, "top-k", 128)] and list(scorers) == [None, "a", "b"]
    assert all(s.llm is scorers[None].llm for s in scorers.values())  # one engine, an adapter per request
    assert scorers[None].lora_request is None
    paths = [scorers[n].lora_request.lora_path for n in "ab"]
    assert paths == [str(adapter_dir.resolve()), str(random_adapter.resolve())]
    engines.clear()
    assert list(scorers_by_adapter("any/model", {}, "vllm")) == [None] and engines == [("any/model", None, "auto", 128)]
