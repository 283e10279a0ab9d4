"""Emulated fine-tuning (EFT): sample from pi_large * (pi_tuned / pi_untuned)^beta, token by token (``reference`` B.3).

Every model reads its own prompt (the large model its template, the small
models theirs) followed by the same generated token ids, so all three must
share one vocabulary (checked; :class:`ModelError` otherwise). Per step the
next-token scores are ``log p_large + beta * (log p_tuned - log p_untuned)``;
the reference adds raw logits instead, which differs only by a per-row
constant and so gives the same distribution after temperature, top-k and
top-p. Each model keeps its own KV cache.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from demoscope.decoding.guidance import Guide
from demoscope.decoding.lm import cache_kwarg, check_same_vocabulary, encode, forward, stop_token_ids
from demoscope.decoding.sampling import SamplingParams, sample_tokens


def eft_scores(
    large_logits: torch.Tensor, tuned_logits: torch.Tensor, untuned_logits: torch.Tensor, beta: float,
) -> torch.Tensor:
    """``log_softmax(large) + beta * (log_softmax(tuned) - log_softmax(untuned))`` over the shared vocabulary (float32).

    Models whose output layers are padded to different widths are cut to the
    narrowest (ids past the tokenizer's vocabulary are never real tokens).
    """
    width = min(large_logits.size(-1), tuned_logits.size(-1), untuned_logits.size(-1))
    out = torch.log_softmax(large_logits[..., :width].float(), dim=-1)
    if beta != 0.0:
        tuned = torch.log_softmax(tuned_logits[..., :width].float(), dim=-1)
        untuned = torch.log_softmax(untuned_logits[..., :width].float(), dim=-1)
        out = out + beta * (tuned - untuned)
    return out


class _Stream:
    """One model reading its own prompt plus the shared generated ids, with a KV cache (batch 1)."""

    def __init__(self, model: Any, prompt_ids: list[int], context: Any = nullcontext):
        self.model, self.kwarg, self.cache, self.context = model, cache_kwarg(model), None, context
        self.pending = list(prompt_ids)  # tokens not yet in the cache

    def next_logits(self) -> torch.Tensor:
        ids = torch.tensor([self.pending], device=self.model.device)
        with self.context():
            logits, self.cache = forward(self.model, ids, self.cache, self.kwarg, logits_to_keep=1)
        self.pending = []
        return logits[0, -1]


def eft_sample(
    large_model: Any,
    large_tokenizer: Any,
    guide: Guide,
    raw_prompt: str,
    beta: float,
    params: SamplingParams,
    generator: torch.Generator,
    large_template: str = "{raw_prompt}",
    add_special_tokens: bool = False,
) -> tuple[list[int], bool]:
    """Sample one EFT response; returns ``(token_ids, stopped_on_eos)`` (the stop token kept at the end).

    ``beta=0`` is plain sampling from the large model (the small models are
    not run). Stops at the large model's stop ids or ``max_new_tokens``.
    """
    check_same_vocabulary(large=large_tokenizer, tuned=guide.tuned.tokenizer, untuned=guide.untuned.tokenizer)
    stops = set(stop_token_ids(large_model, large_tokenizer))
    large_prompt = large_template.format(raw_prompt=raw_prompt)
    large = _Stream(large_model, encode(large_tokenizer, large_prompt, add_special_tokens))
    small = [
        _Stream(m.model, encode(m.tokenizer, m.prompt(raw_prompt), guide.add_special_tokens), m.context)
        for m in (guide.tuned, guide.untuned)
    ] if beta != 0.0 else []
    if not large.pending or any(not s.pending for s in small):
        raise ValueError(f"a prompt encodes to no tokens: {raw_prompt!r}")
    out: list[int] = []
    with torch.inference_mode():
        for _ in range(params.max_new_tokens):
            base = large.next_logits()
            if small:
                scores = eft_scores(base, small[0].next_logits(), small[1].next_logits(), beta)
            else:
                scores = eft_scores(base, base, base, 0.0)
            token = int(sample_tokens(scores[None], params, generator)[0])
            out.append(token)
            if token in stops:
                return out, True
            for stream in [large, *small]:
                stream.pending = [token]
    return out, False
