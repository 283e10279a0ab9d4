"""CBS / BoN / base semantics (reference B.2): W=K=1 is base sampling, BoN takes the best, selections and seeds."""

import torch

from demoscope.decoding import (
    DecodingMethod,
    GuidanceScorer,
    SamplingParams,
    TransformersChunkSampler,
    chunk_beam_search,
    guidance_scores,
    make_generator,
)
from demoscope.decoding.lm import response_text

# No top-k here: with near-uniform tiny-model logits, top-k 50 would make the boosted EOS win 75% of draws.
PARAMS = SamplingParams(temperature=1.0, top_k=None, max_new_tokens=12)
PROMPT = "I think the government"


def ids_of(tok, text=PROMPT):
    return tok(text, add_special_tokens=False)["input_ids"]


class RecordingSampler(TransformersChunkSampler):
    """Records every sample_chunks request (prefixes, n, max_tokens) to check the search's schedule."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requests = []

    def sample_chunks(self, prefixes, n, max_tokens, params, generator):
        self.requests.append(([list(p) for p in prefixes], n, max_tokens))
        return super().sample_chunks(prefixes, n, max_tokens, params, generator)


def base_sample(sampler, prompt_ids, params, generator):
    """The ``base`` method as the generate job runs it: CBS of shape (1, 1, inf) with no scorer."""
    return chunk_beam_search(sampler, prompt_ids, None, "", *DecodingMethod.parse("base").search_shape(), params,
                             generator)


def test_cbs_with_one_beam_and_one_successor_is_base_sampling(large, eos_large, guide):
    for model, tok in (large, eos_large):
        base = base_sample(TransformersChunkSampler(model, tok), ids_of(tok), PARAMS, make_generator(4))
        cbs = chunk_beam_search(
            TransformersChunkSampler(model, tok), ids_of(tok), GuidanceScorer(guide), PROMPT, 1, 1, 5, PARAMS,
            make_generator(4),
        )
        assert cbs.token_ids == base.token_ids and cbs.text == base.text
        assert cbs.finish_reason == base.finish_reason
        assert base.score is None and cbs.score is not None


def test_best_of_n_returns_the_highest_scoring_sample(large, guide):
    model, tok = large
    sampler = RecordingSampler(model, tok)
    bon = DecodingMethod.parse("bon:6").search_shape()  # (1, 6, inf), as the generate job runs it
    result = chunk_beam_search(sampler, ids_of(tok), GuidanceScorer(guide), PROMPT, *bon, PARAMS, make_generator(1))
    assert [(len(p), n, m) for p, n, m in sampler.requests] == [(1, 6, 12)]  # N samples, one selection at the end
    # Re-draw the same N samples and score them from scratch: BoN's answer is their argmax.
    samples = TransformersChunkSampler(model, tok).sample_chunks([ids_of(tok)], 6, 12, PARAMS, make_generator(1))[0]
    texts = [response_text(tok, ids_of(tok), c.token_ids) for c in samples]
    scores = guidance_scores(guide, PROMPT, texts, [True] * 6)
    assert len(set(texts)) == 6
    best = int(scores.argmax())
    assert result.token_ids == samples[best].token_ids
    assert abs(result.score - float(scores[best])) < 2e-5
    assert result.final_texts == [texts[best]]


class RecordingScorer(GuidanceScorer):
    """Records the scores of every round and the rows the search kept."""

    def reset(self, raw_prompt, rows=1):
        self.rounds = []
        super().reset(raw_prompt, rows)

    def score(self, responses, finished):
        scores = super().score(responses, finished)
        self.rounds.append([scores, None])
        return scores

    def select(self, rows):
        self.rounds[-1][1] = list(rows)
        super().select(rows)


def test_cbs_schedule_and_selection(large, guide):
    model, tok = large
    sampler, scorer = RecordingSampler(model, tok), RecordingScorer(guide)
    w, k, chunk_len = 3, 2, 5
    result = chunk_beam_search(sampler, ids_of(tok), scorer, PROMPT, w, k, chunk_len, PARAMS, make_generator(2))
    # W*K samples of the prompt first, then K successors for each of the W kept beams; chunks of L, the last cut to fit.
    shapes = [(len(p), n, m) for p, n, m in sampler.requests]
    assert shapes == [(1, w * k, 5), (w, k, 5), (w, k, 2)]
    prompt_len = len(ids_of(tok))
    for prefixes, _, _ in sampler.requests[1:]:
        assert {len(p) - prompt_len for p in prefixes} <= {5, 10}
    # The last selection: W beams sorted by score, the result is the first; scores are exact guidance scores.
    assert len(result.final_texts) == w and result.final_scores == sorted(result.final_scores, reverse=True)
    want = guidance_scores(guide, PROMPT, result.final_texts, [True] * w)
    torch.testing.assert_close(torch.tensor(result.final_scores, dtype=torch.float64), want, atol=2e-5, rtol=0)
    assert result.text == result.final_texts[0] and result.score == result.final_scores[0]
    assert len(result.token_ids) == 12 and result.finish_reason == "length"
    # Each round keeps the W best of W*K children, each repeated K times (survivor-major), no deduplication.
    assert len(scorer.rounds) == 3 and scorer.rounds[-1][1] is None  # the last round only picks the answer
    for scores, kept in scorer.rounds[:-1]:
        assert len(scores) == w * k
        top = kept[::k]
        assert kept == [i for i in top for _ in range(k)]
        assert min(scores[top]) >= max(s for i, s in enumerate(scores.tolist()) if i not in top)


def test_finished_beams_are_carried_not_resampled(eos_large, guide):
    model, tok = eos_large
    sampler = RecordingSampler(model, tok)
    params = SamplingParams(temperature=1.0, top_k=None, max_new_tokens=30)
    result = chunk_beam_search(sampler, ids_of(tok), GuidanceScorer(guide), PROMPT, 4, 3, 4, params, make_generator(0))
    # With EOS this likely, some kept beams finish early: later rounds continue only unfinished ones.
    assert any(len(p) < 4 for p, _, _ in sampler.requests[1:])
    for prefixes, _, _ in sampler.requests:
        assert all(tok.eos_token_id not in p[len(ids_of(tok)):] for p in prefixes)
    if result.finish_reason == "stop":
        assert result.token_ids[-1] == tok.eos_token_id
    want = guidance_scores(guide, PROMPT, result.final_texts, [True] * 4)
    torch.testing.assert_close(torch.tensor(result.final_scores, dtype=torch.float64), want, atol=2e-5, rtol=0)


def test_seeds_make_searches_reproducible(large, guide):
    model, tok = large

    def run(seed):
        return chunk_beam_search(
            TransformersChunkSampler(model, tok), ids_of(tok), GuidanceScorer(guide), PROMPT, 2, 2, 4,
            SamplingParams(max_new_tokens=12), make_generator(seed),
        )

    a, b, c = run(9), run(9), run(10)  # with the seed's sampling defaults (temperature 0.7, top-k 50)
    assert a.token_ids == b.token_ids and a.score == b.score
    assert a.token_ids != c.token_ids
