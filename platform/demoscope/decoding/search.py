"""Chunk-level beam search (CBS), best-of-N and plain sampling, as in the reference's ``decoders/cbs.py``.

CBS(W, K, L) (``reference`` B.2): start with W*K samples of the prompt; every
L tokens score every beam's whole response so far with the guidance score,
keep the top W (sorted, no deduplication: one parent's children may take
several slots) and give each K successors; finished beams are carried as
they are (each survivor is repeated K times, as the reference tiles its
rows). Stop when every kept beam is finished (EOS or ``max_new_tokens``),
and return the best of the last selection. BoN = CBS(1, N, L=inf); base
sampling = CBS(1, 1, L=inf) without a scorer.

As in the reference, a response stopped by ``max_new_tokens`` counts as
finished and gets the EOS term in its score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from demoscope.decoding.chunks import ChunkSampler
from demoscope.decoding.guidance import GuidanceScorer
from demoscope.decoding.lm import response_text
from demoscope.decoding.sampling import SamplingParams


@dataclass(frozen=True)
class Beam:
    """A response in progress: the large model's new token ids, and why it stopped (if it did)."""

    token_ids: tuple[int, ...] = ()
    eos: bool = False  # ended with a stop token
    finished: bool = False  # EOS or max_new_tokens reached (the reference's "not unfinished")


@dataclass
class SearchResult:
    """What a search returns for one prompt: the best beam, its text and guidance score, and the last selection."""

    token_ids: list[int]
    text: str
    score: float | None
    finish_reason: str  # "stop" (EOS) or "length"
    final_texts: list[str] = field(default_factory=list)
    final_scores: list[float] = field(default_factory=list)


def _top(scores: torch.Tensor, w: int) -> list[int]:
    """Indices of the ``w`` highest scores, best first; ties keep the lower index (deterministic, unlike ``topk``)."""
    return torch.sort(scores, descending=True, stable=True).indices[:w].tolist()


def chunk_beam_search(
    sampler: ChunkSampler,
    prompt_ids: Sequence[int],
    scorer: GuidanceScorer | None,
    raw_prompt: str,
    w: int,
    k: int,
    chunk_len: int | None,
    params: SamplingParams,
    generator: torch.Generator,
) -> SearchResult:
    """CBS(W, K, L) for one prompt; ``chunk_len=None`` is an unbounded chunk (one selection at the end).

    ``prompt_ids`` are the large model's prompt tokens (its own template);
    ``raw_prompt`` is what the scorer formats into the small models'
    templates. ``scorer=None`` is allowed only for W=1 (nothing to rank);
    the result's score is then ``None``.
    """
    if w < 1 or k < 1:
        raise ValueError(f"W and K must be >= 1, got W={w}, K={k}")
    if chunk_len is not None and chunk_len < 1:
        raise ValueError(f"L must be >= 1 or None, got {chunk_len}")
    if scorer is None and w * k > 1:
        raise ValueError("a search over more than one sample needs a guidance scorer")
    prompt_ids = list(prompt_ids)
    total = params.max_new_tokens
    chunk = total if chunk_len is None else min(chunk_len, total)
    tokenizer = sampler.tokenizer
    if scorer is not None:
        scorer.reset(raw_prompt, rows=w * k)
    parents, per_parent, generated = [Beam()], w * k, 0
    while True:
        step = min(chunk, total - generated)
        active = [b for b in parents if not b.finished]
        prefixes = [prompt_ids + list(b.token_ids) for b in active]
        sampled = iter(sampler.sample_chunks(prefixes, per_parent, step, params, generator))
        generated += step
        children: list[Beam] = []
        for beam in parents:
            if beam.finished:
                children += [beam] * per_parent
                continue
            for c in next(sampled):
                children.append(Beam(beam.token_ids + tuple(c.token_ids), c.finished, c.finished or generated >= total))
        texts = [response_text(tokenizer, prompt_ids, c.token_ids) for c in children]
        if scorer is not None:
            scores = scorer.score(texts, [c.finished for c in children])
        else:
            scores = torch.zeros(len(children), dtype=torch.float64)
        keep = _top(scores, w)
        parents = [children[i] for i in keep]
        if all(b.finished for b in parents):
            best = parents[0]
            return SearchResult(
                token_ids=list(best.token_ids), text=texts[keep[0]],
                score=float(scores[keep[0]]) if scorer is not None else None,
                finish_reason="stop" if best.eos else "length",
                final_texts=[texts[i] for i in keep], final_scores=[float(scores[i]) for i in keep],
            )
        if scorer is not None:
            # Next round's rows are each survivor's K successors, survivor-major (as sample_chunks returns them).
            scorer.select([i for i in keep for _ in range(k)])
        per_parent = k
