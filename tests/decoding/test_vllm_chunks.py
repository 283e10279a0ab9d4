"""VLLMChunkSampler against a fake vLLM engine (vLLM's generate API over a real tiny model)."""

import pytest

from demoscope.decoding import (
    SamplingParams,
    TransformersChunkSampler,
    VLLMChunkSampler,
    generate,
    guidance_scores,
    make_generator,
)
from demoscope.decoding.vllm_fake import FakeGenerationLLM, FakeGenerationParams
from demoscope.errors import ConfigError

PROMPT = "I think the government"


def vllm_sampler(model, tok):
    return VLLMChunkSampler(FakeGenerationLLM(model, tok), sampling_params_cls=FakeGenerationParams)


def test_greedy_chunks_equal_the_transformers_sampler(large):
    model, tok = large
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=8)
    prefixes = [ids, ids[:-1] + [17]]  # two prompts of equal length
    got = vllm_sampler(model, tok).sample_chunks(prefixes, 2, 8, greedy, make_generator(0))
    want = TransformersChunkSampler(model, tok).sample_chunks(prefixes, 2, 8, greedy, make_generator(0))
    assert [[c.token_ids for c in cs] for cs in got] == [[c.token_ids for c in cs] for cs in want]
    assert got[0][0].token_ids != got[1][0].token_ids


def test_requests_carry_n_max_tokens_filters_and_fresh_seeds(large):
    model, tok = large
    sampler = vllm_sampler(model, tok)
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    params = SamplingParams(temperature=0.9, top_k=None, top_p=0.95)
    generator = make_generator(1)
    first = sampler.sample_chunks([ids], 3, 5, params, generator)
    second = sampler.sample_chunks([ids + first[0][0].token_ids, ids + first[0][1].token_ids], 2, 4, params, generator)
    assert [len(cs) for cs in first] == [3] and [len(cs) for cs in second] == [2, 2]
    (p1, r1), (p2, r2) = sampler.llm.calls
    assert p1 == [ids] and p2[1] == ids + first[0][1].token_ids  # token-id prompts, prefix + chunk
    assert [(r.n, r.max_tokens, r.top_k, r.top_p, r.temperature) for r in r1 + r2] == [
        (3, 5, -1, 0.95, 0.9), (2, 4, -1, 0.95, 0.9), (2, 4, -1, 0.95, 0.9)]
    assert all(r.stop_token_ids == [tok.eos_token_id] for r in r1 + r2)
    seeds = [r.seed for r in r1 + r2]
    assert len(set(seeds)) == 3  # a fresh seed per request: chunks never replay a random stream
    assert len({tuple(c.token_ids) for c in first[0]}) == 3  # n samples of one request differ
    # Reproducible: the same generator seed gives the same requests and samples.
    again = vllm_sampler(model, tok).sample_chunks([ids], 3, 5, params, make_generator(1))
    assert [c.token_ids for c in again[0]] == [c.token_ids for c in first[0]]


def test_finish_reason_maps_to_finished(eos_large):
    model, tok = eos_large
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    chunks = vllm_sampler(model, tok).sample_chunks(
        [ids], 12, 10, SamplingParams(temperature=1.0, top_k=None), make_generator(0))[0]
    stopped = [c for c in chunks if c.finished]
    assert stopped and len(stopped) < len(chunks)
    assert all(c.token_ids[-1] == tok.eos_token_id for c in stopped)
    assert all(len(c.token_ids) == 10 for c in chunks if not c.finished)


def test_cbs_and_bon_run_on_the_vllm_path(large, guide):
    model, tok = large
    params = SamplingParams(temperature=1.0, top_k=None, max_new_tokens=10)
    for method in ("cbs:2,2,4", "bon:3"):
        sampler = vllm_sampler(model, tok)
        (result,) = generate(method, [PROMPT], sampler, guide, params)
        assert len(result.token_ids) == 10 and result.finish_reason == "length"
        want = float(guidance_scores(guide, PROMPT, [result.text], [True])[0])
        assert result.guidance == pytest.approx(want, abs=2e-5)
        expected_calls = 3 if method.startswith("cbs") else 1  # chunks of 4, 4, 2 / one unbounded chunk
        assert len(sampler.llm.calls) == expected_calls
    with pytest.raises(ConfigError, match="EFT"):
        generate("eft", [PROMPT], vllm_sampler(model, tok), guide, params)


def test_fake_validates_like_vllm(large):
    model, tok = large
    with pytest.raises(ValueError, match="top_p"):
        FakeGenerationParams(top_p=0.0)
    with pytest.raises(ValueError, match="same"):
        FakeGenerationLLM(model, tok).generate(["a", "b"], [FakeGenerationParams()])
    params = FakeGenerationParams(n=2, max_tokens=3, seed=4)
    out = FakeGenerationLLM(model, tok).generate({"prompt_token_ids": [5, 6]}, params)
    assert len(out) == 1 and [len(o.token_ids) for o in out[0].outputs] == [3, 3]
    assert [o.finish_reason for o in out[0].outputs] == ["length", "length"]
    assert out[0].outputs[0].text == tok.decode(out[0].outputs[0].token_ids, skip_special_tokens=True)
