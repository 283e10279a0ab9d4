"""VLLMOptionScorer against FakeLLM (vLLM's API over a real tiny model): same numbers, top-k rule, LoRA."""

import math

import numpy as np
import pytest
import torch

from demoscope.models import TransformersOptionScorer, VLLMOptionScorer, encode_prompts, letter_token_ids
from demoscope.models.vllm_fake import FakeLLM, FakeLoRARequest, FakeSamplingParams


def vllm_scorer(model, tok, logprobs, **kwargs):
    fake = FakeLLM(model, tok, max_logprobs=-1)
    return VLLMOptionScorer(fake, logprobs=logprobs, sampling_params_cls=FakeSamplingParams, **kwargs)


def test_full_vocab_logprobs_equal_the_transformers_scorer(llama, survey_prompts):
    model, tok = llama
    prompts, n_options = survey_prompts
    got, got_mass = vllm_scorer(model, tok, logprobs=len(tok)).score_with_mass(prompts, n_options)
    want, want_mass = TransformersOptionScorer(model, tok).score_with_mass(prompts, n_options)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(got_mass, want_mass, rtol=1e-4)


def test_letters_outside_the_top_k_count_zero(llama, survey_prompts):
    model, tok = llama
    prompts, n_options = survey_prompts
    no_space, space = letter_token_ids(tok)
    with torch.no_grad():
        logps = [torch.log_softmax(model(torch.tensor([ids])).logits[0, -1], -1) for ids in encode_prompts(tok, prompts)]
    # k = the median rank of the letter tokens: about half the letters fall outside.
    ranks = [int((lp > lp[t]).sum()) + 1 for lp in logps for t in no_space[:4] + space[:4]]
    k = int(np.median(ranks))
    scorer = vllm_scorer(model, tok, logprobs=k)
    sampled = []
    real_generate = scorer.llm.generate

    def record(*args, **kwargs):
        outs = real_generate(*args, **kwargs)
        sampled.extend(o.outputs[0].token_ids[0] for o in outs)
        return outs

    scorer.llm.generate = record
    dists, masses = scorer.score_with_mass(prompts, n_options)
    partial = 0
    for lp, n, s, dist, mass in zip(logps, n_options, sampled, dists, masses):
        # vLLM returns the top-k tokens plus the sampled one; anything else is absent, i.e. 0.
        returned = set(torch.topk(lp, k).indices.tolist()) | {s}
        p = np.array([sum(math.exp(lp[t]) for t in {no_space[j], space[j]} if t in returned) for j in range(n)])
        partial += 0 < (p > 0).sum() < n
        assert mass == pytest.approx(p.sum(), rel=1e-5, abs=1e-12)
        np.testing.assert_allclose(dist, p / p.sum() if p.sum() > 0 else np.full(n, 1 / n), atol=1e-6)
    assert partial > 0  # the case the rule is about did occur
    assert scorer.zero_mass_count == int((masses == 0).sum())


def test_too_many_logprobs_is_refused_like_vllm(llama):
    model, tok = llama
    scorer = VLLMOptionScorer(FakeLLM(model, tok), logprobs=128, sampling_params_cls=FakeSamplingParams)
    with pytest.raises(ValueError, match="Requested sample logprobs of 128, which is greater than max allowed: 20"):
        scorer.score(["Answer:"], [2])
    with pytest.raises(ValueError, match="non-negative or -1"):
        FakeSamplingParams(logprobs=-2)


def test_lora_request_routes_to_the_named_adapter(peft_llama, survey_prompts):
    model, tok = peft_llama
    prompts, n_options = survey_prompts
    request = VLLMOptionScorer.lora("a", "/adapters/a", request_cls=FakeLoRARequest)
    with_a = vllm_scorer(model, tok, len(tok), lora_request=request).score(prompts, n_options)
    base = vllm_scorer(model, tok, len(tok)).score(prompts, n_options)
    want_a = TransformersOptionScorer(model, tok, adapter="a").score(prompts, n_options)
    want_base = TransformersOptionScorer(model, tok, adapter=None).score(prompts, n_options)
    for got, want in zip(with_a + base, want_a + want_base):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert max(np.abs(a - b).max() for a, b in zip(with_a, base)) > 1e-3


def test_lora_ids_are_stable_per_name_and_path(llama):
    first = VLLMOptionScorer.lora("x", "/p/1", request_cls=FakeLoRARequest)
    assert VLLMOptionScorer.lora("x", "/p/1", request_cls=FakeLoRARequest) == first
    moved = VLLMOptionScorer.lora("x", "/p/2", request_cls=FakeLoRARequest)
    assert moved.lora_int_id != first.lora_int_id and first.lora_int_id >= 1
    model, tok = llama
    with pytest.raises(ValueError, match="LoRA is not enabled"):
        FakeLLM(model, tok).generate(["Answer:"], FakeSamplingParams(max_tokens=1), lora_request=first)


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
