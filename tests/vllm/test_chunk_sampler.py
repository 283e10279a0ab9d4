"""VLLMChunkSampler on a real engine (SmolLM2) against the Transformers sampler's invariants, and BoN / CBS on it."""

import pytest

pytest.importorskip("vllm")

from demoscope.decoding import (  # noqa: E402
    Guide,
    SamplingParams,
    TransformersChunkSampler,
    VLLMChunkSampler,
    generate,
    guidance_scores,
    make_generator,
)
from demoscope.decoding.vllm_fake import FakeGenerationLLM, FakeGenerationParams  # noqa: E402
from demoscope.models import load_causal_lm  # noqa: E402

from .conftest import random_adapter  # noqa: E402

QUESTION = "What is the capital of France? Answer with one word."


@pytest.fixture(scope="module")
def smollm2_hf(smollm2_path):
    return load_causal_lm(smollm2_path, device="cpu")


@pytest.fixture(scope="module")
def sampler(smollm2_engine, smollm2_hf):
    """The real engine, stopping where the Transformers sampler stops (its generation config's EOS ids)."""
    transformers_stops = TransformersChunkSampler(*smollm2_hf).stop_ids
    return VLLMChunkSampler(smollm2_engine, stop_ids=transformers_stops)


@pytest.fixture(scope="module")
def chat_ids(smollm2_hf):
    _, tok = smollm2_hf
    text = tok.apply_chat_template([{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def guide(smollm2_path, tmp_path_factory):
    """SmolLM2 with a random LoRA adapter (tuned) and without it (untuned): the large model's own vocabulary."""
    folder = random_adapter(smollm2_path, 3, tmp_path_factory.mktemp("guide") / "tuned")
    model, tok = load_causal_lm(smollm2_path, adapters={"tuned": folder}, device="cpu")
    return Guide.from_adapter(model, "tuned", tok)


def test_greedy_chunks_equal_the_transformers_sampler(sampler, smollm2_hf, chat_ids):
    _, tok = smollm2_hf
    plain = tok("I think the government should", add_special_tokens=False)["input_ids"]
    greedy = SamplingParams(temperature=0.0, top_k=None, max_new_tokens=8)
    for prefixes in ([plain], [chat_ids]):
        got = sampler.sample_chunks(prefixes, 2, 8, greedy, make_generator(0))
        want = TransformersChunkSampler(*smollm2_hf).sample_chunks(prefixes, 2, 8, greedy, make_generator(0))
        assert [[(c.token_ids, c.finished) for c in cs] for cs in got] == [[(c.token_ids, c.finished) for c in cs]
                                                                            for cs in want]
    # The chat answer ends at SmolLM2's <|im_end|>, which vLLM keeps in token_ids, as the Transformers path does.
    (answer,) = sampler.sample_chunks([chat_ids], 1, 8, greedy, make_generator(0))[0]
    assert answer.finished and answer.token_ids[-1] in sampler.stop_ids and "Paris" in tok.decode(answer.token_ids)


def test_sampled_chunks_keep_the_length_and_stop_invariants(sampler, chat_ids):
    params = SamplingParams(temperature=1.0, top_k=None)
    chunks = sampler.sample_chunks([chat_ids, chat_ids], 12, 6, params, make_generator(3))
    flat = [c for cs in chunks for c in cs]
    assert [len(cs) for cs in chunks] == [12, 12]
    stopped = [c for c in flat if c.finished]
    assert stopped and len(stopped) < len(flat)  # both cases occur: short answers end, longer ones run out
    for c in flat:
        assert all(t not in sampler.stop_ids for t in c.token_ids[:-1])  # nothing after a stop token
        assert (c.token_ids[-1] in sampler.stop_ids) == c.finished
        assert c.finished or len(c.token_ids) == 6
    # A seeded search is reproducible on the real engine: each request carries its own seed.
    again = sampler.sample_chunks([chat_ids, chat_ids], 12, 6, params, make_generator(3))
    assert [[c.token_ids for c in cs] for cs in again] == [[c.token_ids for c in cs] for cs in chunks]
    other = sampler.sample_chunks([chat_ids, chat_ids], 12, 6, params, make_generator(4))
    assert [[c.token_ids for c in cs] for cs in other] != [[c.token_ids for c in cs] for cs in chunks]


@pytest.mark.parametrize("method,calls", [("bon:4", 1), ("cbs:2,2,4", 3)])
def test_bon_and_cbs_run_on_the_real_engine(sampler, guide, method, calls):
    seen = []
    real_generate = sampler.llm.generate

    def counting(*args, **kwargs):
        seen.append(len(args[0]))
        return real_generate(*args, **kwargs)

    sampler.llm.generate = counting
    try:
        params = SamplingParams(temperature=1.0, top_k=None, max_new_tokens=10, seed=5)
        (result,) = generate(method, ["I think the government should"], sampler, guide, params)
    finally:
        sampler.llm.generate = real_generate
    assert 1 <= len(result.token_ids) <= 10
    assert (result.finish_reason == "length") == (len(result.token_ids) == 10
                                                  and result.token_ids[-1] not in sampler.stop_ids)
    # A finished search adds the EOS term whether it stopped or ran out of tokens (the reference's stop rule).
    want = float(guidance_scores(guide, "I think the government should", [result.text], [True])[0])
    assert result.guidance == pytest.approx(want, abs=1e-4)
    if result.finish_reason == "length":
        assert len(seen) == calls  # chunks of 4, 4, 2 for CBS; one unbounded chunk for BoN
    assert seen[0] == 1 and all(n <= 2 for n in seen)  # the prompt first, then at most W beams per call


def test_the_fake_engine_generates_as_the_real_one(sampler, smollm2_hf, chat_ids):
    model, tok = smollm2_hf
    greedy = SamplingParams(temperature=0.0, top_k=None, max_new_tokens=8)
    fake = VLLMChunkSampler(FakeGenerationLLM(model, tok), sampling_params_cls=FakeGenerationParams,
                            stop_ids=sampler.stop_ids)
    plain = tok("The best thing about summer is", add_special_tokens=False)["input_ids"]
    for prefixes in ([plain], [chat_ids]):
        got = sampler.sample_chunks(prefixes, 1, 8, greedy, make_generator(0))
        want = fake.sample_chunks(prefixes, 1, 8, greedy, make_generator(0))
        assert [(c.token_ids, c.finished) for c in got[0]] == [(c.token_ids, c.finished) for c in want[0]]
