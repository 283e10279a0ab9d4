"""The large model's chunk sampler: reusing and reordering its KV cache draws exactly what recomputation draws."""

import pytest
import torch

from demoscope.decoding import SamplingParams, TransformersChunkSampler, make_generator, sample_tokens

PARAMS = SamplingParams(temperature=1.0, top_k=None, max_new_tokens=12)


def prompt_ids(tok, text="I think the government"):
    return tok(text, add_special_tokens=False)["input_ids"]


def naive_sample(model, prefix, n, steps, params, generator, stop_ids, pad_id):
    """Sampling without any cache: a full forward over every row's whole sequence at every step."""
    rows = [list(prefix) for _ in range(n)]
    done = [False] * n
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor(rows)).logits[:, -1]
        tokens = sample_tokens(logits, params, generator).tolist()
        for i, t in enumerate(tokens):
            rows[i].append(pad_id if done[i] else t)
            done[i] = done[i] or t in stop_ids
        if all(done):
            break
    return [r[len(prefix):] for r in rows]


def test_one_chunk_equals_uncached_sampling(large):
    model, tok = large
    sampler = TransformersChunkSampler(model, tok)
    prefix = prompt_ids(tok)
    got = sampler.sample_chunks([prefix], 3, 12, PARAMS, make_generator(7))[0]
    want = naive_sample(model, prefix, 3, 12, PARAMS, make_generator(7), sampler.stop_ids, sampler.pad_id)
    assert [c.token_ids for c in got] == want
    assert len({tuple(c.token_ids) for c in got}) == 3  # independent rows


def run_chunks(sampler, prefix, picks, n=3, steps=4, seed=3):
    """Several chunks; after each, continue from the chosen children (repeats allowed), like a beam search."""
    generator = make_generator(seed)
    parents, history = [list(prefix)], []
    for pick in picks:
        chunks = sampler.sample_chunks(parents, n, steps, PARAMS, generator)
        children = [p + c.token_ids for p, cs in zip(parents, chunks) for c in cs]
        history.append(children)
        parents = [children[i] for i in pick]
    return history


def test_reordered_cache_equals_reencoding_every_chunk(large):
    model, tok = large
    picks = [[2, 0, 2], [1, 1], [4, 0, 3], [5]]  # reorder, duplicate, drop
    cached = TransformersChunkSampler(model, tok)
    fresh = TransformersChunkSampler(model, tok, reuse_cache=False)
    prefix = prompt_ids(tok)
    assert run_chunks(cached, prefix, picks) == run_chunks(fresh, prefix, picks)
    assert cached.stats["cache_hits"] == len(picks) - 1 and fresh.stats["cache_hits"] == 0
    # Cached: only the prompt was ever encoded; fresh re-encodes every parent each chunk.
    assert cached.stats["encoded_tokens"] == len(prefix) - 1
    assert fresh.stats["encoded_tokens"] > 5 * cached.stats["encoded_tokens"]


def test_chunked_sampling_continues_the_same_random_stream(large):
    model, tok = large
    prefix = prompt_ids(tok)
    whole = TransformersChunkSampler(model, tok).sample_chunks([prefix], 1, 12, PARAMS, make_generator(11))[0][0]
    sampler, generator, ids = TransformersChunkSampler(model, tok), make_generator(11), list(prefix)
    for _ in range(4):
        ids += sampler.sample_chunks([ids], 1, 3, PARAMS, generator)[0][0].token_ids
    assert ids[len(prefix):] == whole.token_ids


def test_rows_stop_at_eos_and_are_cut_there(eos_large):
    model, tok = eos_large
    sampler = TransformersChunkSampler(model, tok)
    chunks = sampler.sample_chunks([prompt_ids(tok)], 16, 10, PARAMS, make_generator(0))[0]
    finished = [c for c in chunks if c.finished]
    assert finished and len(finished) < len(chunks)
    for c in finished:
        assert c.token_ids[-1] == tok.eos_token_id and tok.eos_token_id not in c.token_ids[:-1]
    for c in chunks:
        if not c.finished:
            assert len(c.token_ids) == 10 and tok.eos_token_id not in c.token_ids


def test_fresh_prefixes_of_different_lengths_are_refused(large):
    model, tok = large
    sampler = TransformersChunkSampler(model, tok)
    with pytest.raises(ValueError, match="equal lengths"):
        sampler.sample_chunks([[5, 6, 7], [5, 6]], 1, 2, PARAMS, make_generator(0))
    with pytest.raises(ValueError, match="at least one token"):
        sampler.sample_chunks([[]], 1, 2, PARAMS, make_generator(0))
