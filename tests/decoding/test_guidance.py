"""Guidance score: incremental per-beam caching equals full recomputation, across tokenizers and re-tokenization."""

import math

import pytest
import torch

from demoscope.decoding import (
    GuidanceScorer,
    Guide,
    SamplingParams,
    TransformersChunkSampler,
    chunk_beam_search,
    guidance_scores,
    make_generator,
    response_logprobs,
)

ATOL = 2e-5


def manual_logprob(small, prompt, response, finished):
    """log pi(response | prompt) token by token, written out from the reference's definition."""
    tok = small.tokenizer
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = tok(prompt + response, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if finished else [])
    start = 0
    while start < min(len(prompt_ids), len(ids)) and prompt_ids[start] == ids[start]:
        start += 1
    with torch.no_grad():
        logp = torch.log_softmax(small.model(torch.tensor([ids])).logits[0].double(), -1)
    return sum(float(logp[t - 1, ids[t]]) for t in range(max(start, 1), len(ids)))


def test_full_recompute_matches_the_definition_and_is_batch_invariant(guide):
    responses = [" and the world", "", " of people who", " yes"]
    finished = [True, False, False, True]
    got = response_logprobs(guide.tuned, "I think", responses, finished, batch_size=4)
    single = torch.cat([response_logprobs(guide.tuned, "I think", [r], [f]) for r, f in zip(responses, finished)])
    want = [manual_logprob(guide.tuned, "I think", r, f) for r, f in zip(responses, finished)]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(got, single, atol=1e-5, rtol=0)
    assert got[1] == 0.0  # an unfinished empty response has nothing to score
    assert got[3] < response_logprobs(guide.tuned, "I think", [" yes"], [False])[0]  # the EOS term counts


def test_identical_models_give_zero(guide):
    same = Guide.from_models(guide.tuned.model, guide.tuned.model, guide.tuned.tokenizer)
    scores = guidance_scores(same, "I think", [" the world", " yes"], [True, False])
    assert torch.equal(scores, torch.zeros(2, dtype=torch.float64))


class CheckingScorer(GuidanceScorer):
    """Asserts at every chunk that the incremental scores equal a full recomputation."""

    def reset(self, raw_prompt, rows=1):
        self.raw_prompt, self.checks = raw_prompt, 0
        super().reset(raw_prompt, rows)

    def score(self, responses, finished):
        got = super().score(responses, finished)
        want = guidance_scores(self.guide, self.raw_prompt, responses, finished)
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
        assert got.abs().max() > 0.1  # the small models really disagree
        self.checks += 1
        return got


@pytest.mark.parametrize("which", ["guide", "other_guide"])
def test_incremental_equals_full_over_a_beam_search(which, request, large):
    small = request.getfixturevalue(which)
    model, tok = large
    scorer = CheckingScorer(small)
    sampler = TransformersChunkSampler(model, tok)
    params = SamplingParams(temperature=1.0, top_k=None, max_new_tokens=15)
    prompt = "I think the government"
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    result = chunk_beam_search(sampler, ids, scorer, prompt, 3, 2, 3, params, make_generator(0))
    assert scorer.checks == 5  # 15 tokens in chunks of 3, checked at every selection
    fed = scorer.tuned.stats["fed_tokens"]
    assert fed < 0.5 * sum(len(t) for t in result.final_texts) * 5  # far fewer than re-encoding every chunk
    if which == "other_guide":
        assert small.tuned.tokenizer.get_vocab() != tok.get_vocab()


def test_retokenization_that_rewrites_earlier_tokens_stays_exact(guide):
    # " wor" -> " world" replaces the token " wor"; "The gover" + "nment" merges into the prompt's last tokens.
    scorer = GuidanceScorer(guide)
    for prompt, steps in [("I think", ["", " wor", " world", " world is", " world is"]),
                          ("The gover", ["", "nment", "nment of", "nment of the"])]:
        scorer.reset(prompt, rows=2)
        before = scorer.tuned.stats["refed_beams"]
        for i, text in enumerate(steps):
            responses = [text, steps[max(i - 1, 0)]]
            finished = [i == len(steps) - 1, False]
            got = scorer.score(responses, finished)
            torch.testing.assert_close(got, guidance_scores(guide, prompt, responses, finished), atol=ATOL, rtol=0)
            scorer.select([1, 0])  # swap beams every step, so caches move between rows too
            scorer.select([1, 0])
        assert scorer.tuned.stats["refed_beams"] > before


def test_select_duplicates_and_reorders_beams(guide):
    scorer = GuidanceScorer(guide)
    scorer.reset("I think", rows=3)
    first = [" the", " a new", " people"]
    scorer.score(first, [False] * 3)
    scorer.select([2, 2, 0, 1])
    second = [" people who", " people", " the world", " a new day"]
    got = scorer.score(second, [False, True, False, True])
    want = guidance_scores(guide, "I think", second, [False, True, False, True])
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    assert not any(math.isnan(float(s)) for s in got)


def test_a_lora_adapter_and_its_disabled_base_as_the_pair(large):
    """Tuned = a PEFT adapter, untuned = the same model with adapters off (what LoRA DPO training gives)."""
    from peft import LoraConfig, get_peft_model

    from demoscope.decoding import SmallModel
    from demoscope.models import load_causal_lm, tiny_model

    base, tok = load_causal_lm(tiny_model("llama", seed=1), device="cpu")
    plain, _ = load_causal_lm(tiny_model("llama", seed=1), device="cpu")
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]), adapter_name="dpo")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    peft_model.eval()
    pair = Guide.from_adapter(peft_model, "dpo", tok)
    responses, finished = [" the world", " of people who"], [True, False]
    got = guidance_scores(pair, "I think", responses, finished)
    tuned = response_logprobs(SmallModel(peft_model, tok, adapter="dpo"), "I think", responses, finished)
    untuned = response_logprobs(SmallModel(plain, tok), "I think", responses, finished)
    torch.testing.assert_close(got, tuned - untuned, atol=1e-5, rtol=0)
    assert got.abs().min() > 0.01  # the adapter matters
    scorer = GuidanceScorer(pair)
    scorer.reset("I think", rows=2)
    for step in ([" the", " of"], responses):
        torch.testing.assert_close(
            scorer.score(step, finished), guidance_scores(pair, "I think", step, finished), atol=ATOL, rtol=0)
