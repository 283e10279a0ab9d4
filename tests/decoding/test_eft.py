"""EFT (reference B.3): beta=0 is the large model, base = untuned with beta=1 is the tuned model, shared vocabulary."""

import contextlib

import pytest
import torch

from demoscope.decoding import (
    DecodingMethod,
    Guide,
    SamplingParams,
    TransformersChunkSampler,
    chunk_beam_search,
    eft_sample,
    eft_scores,
    make_generator,
)
from demoscope.decoding.methods import IMDB_BASE_TEMPLATE
from demoscope.errors import ModelError

PROMPT = "I think the government"
PARAMS = SamplingParams(temperature=1.0, top_k=None, max_new_tokens=12)


def base_sample(sampler, prompt_ids, params, generator):
    """The ``base`` method as the generate job runs it: CBS of shape (1, 1, inf) with no scorer."""
    return chunk_beam_search(sampler, prompt_ids, None, "", *DecodingMethod.parse("base").search_shape(), params,
                             generator)


def test_scores_rule_on_hand_made_logits():
    large, tuned, untuned = torch.randn(3, 2, 6, generator=torch.Generator().manual_seed(0))
    def lsm(x):
        return torch.log_softmax(x, -1)

    assert torch.equal(eft_scores(large, tuned, untuned, 0.0), lsm(large))
    torch.testing.assert_close(eft_scores(large, tuned, untuned, 2.0), lsm(large) + 2.0 * (lsm(tuned) - lsm(untuned)))
    # Up to a per-row constant this is the reference's raw-logit rule: same softmax.
    raw = large + 2.0 * (tuned - untuned)
    torch.testing.assert_close(eft_scores(large, tuned, untuned, 2.0).softmax(-1), raw.softmax(-1))
    # Untuned = large and beta = 1: exactly the tuned model's distribution.
    torch.testing.assert_close(eft_scores(large, tuned, large, 1.0), lsm(tuned))
    # Output layers padded to different widths are cut to the shared part.
    assert eft_scores(torch.randn(10), torch.randn(8), torch.randn(9), 1.0).shape == (8,)


def test_beta_zero_samples_exactly_what_the_large_model_samples(large, guide):
    model, tok = large
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    base = base_sample(TransformersChunkSampler(model, tok), ids, PARAMS, make_generator(3))
    got, eos = eft_sample(model, tok, guide, PROMPT, 0.0, PARAMS, make_generator(3))
    assert got == base.token_ids and eos == (base.finish_reason == "stop")


def test_untuned_as_base_with_beta_one_samples_the_tuned_model(guide):
    tok = guide.tuned.tokenizer
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    tuned = base_sample(TransformersChunkSampler(guide.tuned.model, tok), ids, PARAMS, make_generator(5))
    got, _ = eft_sample(guide.untuned.model, tok, guide, PROMPT, 1.0, PARAMS, make_generator(5))
    assert got == tuned.token_ids


def uncached_step_scores(large_model, guide, large_ids, tuned_ids, untuned_ids, beta):
    """EFT's next-token scores with each model re-reading its whole sequence (no cache): the plain reference."""
    logits = []
    with torch.inference_mode():
        for model, context, ids in ((large_model, contextlib.nullcontext, large_ids),
                                    (guide.tuned.model, guide.tuned.context, tuned_ids),
                                    (guide.untuned.model, guide.untuned.context, untuned_ids)):
            with context():
                logits.append(model(input_ids=torch.tensor([list(ids)])).logits[0, -1])
    return eft_scores(*logits, beta)


def test_cached_steps_equal_uncached_recomputation(large, guide):
    model, tok = large
    greedy = SamplingParams(temperature=0.0, max_new_tokens=10)
    got, _ = eft_sample(model, tok, guide, PROMPT, 1.5, greedy, make_generator(0), large_template=IMDB_BASE_TEMPLATE)
    # Greedy EFT by hand, each model re-reading its own prompt + the shared tokens every step, no cache.
    large_ids = tok(IMDB_BASE_TEMPLATE.format(raw_prompt=PROMPT), add_special_tokens=False)["input_ids"]
    small_ids = guide.tuned.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    want = []
    for _ in range(10):
        scores = uncached_step_scores(model, guide, large_ids + want, small_ids + want, small_ids + want, 1.5)
        want.append(int(scores.argmax()))
    assert got == want
    plain, _ = eft_sample(model, tok, guide, PROMPT, 0.0, greedy, make_generator(0), large_template=IMDB_BASE_TEMPLATE)
    assert plain != got  # the guidance changed the greedy path


def test_mismatched_vocabularies_are_refused(large, guide, other_guide):
    model, tok = large
    with pytest.raises(ModelError, match="EFT needs one shared vocabulary.*2048 tokens.*1024 tokens"):
        eft_sample(model, tok, other_guide, PROMPT, 1.0, PARAMS, make_generator(0))
    mixed = Guide(guide.tuned, other_guide.untuned)  # only the untuned model differs; beta=0 is checked too
    with pytest.raises(ModelError, match="untuned tokenizer.*use CBS or BoN"):
        eft_sample(model, tok, mixed, PROMPT, 0.0, PARAMS, make_generator(0))
