"""The large model's side of guided decoding: sample K continuations of up to L tokens for each prefix.

One protocol, :class:`ChunkSampler`, two backends. :class:`TransformersChunkSampler`
runs any Hugging Face causal LM and keeps its KV cache between calls: a call
whose prefixes are continuations it returned last time reorders (and
duplicates) the cached rows instead of re-encoding them, which is exactly the
reference CBS's cache reordering (``reference`` B.2). :class:`VLLMChunkSampler`
is the GPU path: one ``llm.generate`` request per prefix with
``SamplingParams(n=K, max_tokens=L)``; re-sending the prefix is cheap there
because vLLM's prefix cache holds its KV blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from demoscope.decoding.lm import cache_kwarg, forward, pad_token_id, stop_token_ids
from demoscope.decoding.sampling import SamplingParams, draw_seed, sample_tokens


@dataclass(frozen=True)
class Chunk:
    """One sampled continuation: its new token ids (ending in the stop token if ``finished``) and whether it hit one."""

    token_ids: list[int]
    finished: bool


@runtime_checkable
class ChunkSampler(Protocol):
    """Anything that continues token prefixes with the large model."""

    tokenizer: Any

    def sample_chunks(
        self, prefixes: Sequence[Sequence[int]], n: int, max_tokens: int, params: SamplingParams,
        generator: torch.Generator,
    ) -> list[list[Chunk]]:
        """For each prefix (prompt + response ids so far), ``n`` continuations of at most ``max_tokens`` tokens.

        A continuation stops early at a stop token (EOS). Randomness comes
        from ``generator`` and continues across calls, so reproducible for a
        seeded generator.
        """
        ...


def _check_request(prefixes: Sequence[Sequence[int]], n: int, max_tokens: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if any(len(p) == 0 for p in prefixes):
        raise ValueError("every prefix needs at least one token (the prompt)")


class TransformersChunkSampler:
    """Sample chunks from a Hugging Face causal LM, keeping the KV cache of the rows it returned.

    All rows advance in lockstep, one batched forward per token; a row that
    stops keeps receiving the pad token (as in the reference) so the batch
    stays rectangular. After a call the sampler remembers each unfinished
    row's full token ids; the next call's prefixes that match them are
    served by reordering the cache (``reorder_cache`` with repeated indices
    for the K successors). Otherwise (first call, another prompt, or
    ``reuse_cache=False``) the prefixes are encoded afresh; they must then
    have equal lengths (one prompt per search, as the reference runs).
    ``stats`` counts cache hits and tokens encoded, for tests and benchmarks.
    """

    def __init__(self, model: Any, tokenizer: Any, reuse_cache: bool = True):
        self.model, self.tokenizer, self.reuse_cache = model, tokenizer, reuse_cache
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.pad_id = pad_token_id(model, tokenizer)
        self._kwarg = cache_kwarg(model)
        self._state: tuple[Any, torch.Tensor, dict[tuple[int, ...], int]] | None = None
        self.stats = {"calls": 0, "cache_hits": 0, "encoded_tokens": 0, "forward_steps": 0}

    def sample_chunks(
        self, prefixes: Sequence[Sequence[int]], n: int, max_tokens: int, params: SamplingParams,
        generator: torch.Generator,
    ) -> list[list[Chunk]]:
        """For each prefix, ``n`` continuations of at most ``max_tokens`` tokens (see :class:`ChunkSampler`)."""
        prefixes = [list(p) for p in prefixes]
        _check_request(prefixes, n, max_tokens)
        self.stats["calls"] += 1
        if not prefixes:
            return []
        device = self.model.device
        stops = torch.tensor(self.stop_ids, device=device)
        with torch.inference_mode():
            cache, pending = self._restore(prefixes, n)
            rows = pending.size(0)
            new = torch.empty(rows, 0, dtype=torch.long, device=device)
            finished = torch.zeros(rows, dtype=torch.bool, device=device)
            for _ in range(max_tokens):
                # The cache holds every token but the last sampled one ("pending"), fed now.
                logits, cache = forward(self.model, pending[:, None], cache, self._kwarg)
                self.stats["forward_steps"] += 1
                tokens = sample_tokens(logits[:, -1], params, generator)
                tokens = torch.where(finished, torch.full_like(tokens, self.pad_id), tokens)
                new = torch.cat([new, tokens[:, None]], dim=1)
                finished |= torch.isin(tokens, stops)
                pending = tokens
                if bool(finished.all()):
                    break
        new_ids, done = new.tolist(), finished.tolist()
        chunks, index = [], {}
        for row in range(rows):
            ids = new_ids[row]
            if done[row]:
                # Cut after the first stop token; what follows is padding.
                end = next(i for i, t in enumerate(ids) if t in self.stop_ids) + 1
                chunks.append(Chunk(ids[:end], True))
            else:
                chunks.append(Chunk(ids, False))
                index[tuple(prefixes[row // n] + ids)] = row
        self._state = (cache, pending, index) if self.reuse_cache else None
        return [chunks[i * n:(i + 1) * n] for i in range(len(prefixes))]

    def clear(self) -> None:
        """Drop the cache kept from the last call (it is dropped anyway when a call starts on other prefixes)."""
        self._state = None

    def _restore(self, prefixes: list[list[int]], n: int) -> tuple[Any, torch.Tensor]:
        """A cache over each prefix minus its last token and that last token, repeated ``n`` times per prefix."""
        device = self.model.device
        state, self._state = self._state, None  # a cache is reordered in place: use it once
        if state is not None and all(tuple(p) in state[2] for p in prefixes):
            cache, pending, index = state
            rows = torch.tensor([index[tuple(p)] for p in prefixes], device=device).repeat_interleave(n)
            cache.reorder_cache(rows)
            self.stats["cache_hits"] += 1
            return cache, pending[rows]
        if len({len(p) for p in prefixes}) > 1:
            raise ValueError(
                "prefixes not continued from the last call must have equal lengths; sample one prompt at a time"
            )
        unique = list(dict.fromkeys(tuple(p) for p in prefixes))
        where = {p: i for i, p in enumerate(unique)}
        rows = torch.tensor([where[tuple(p)] for p in prefixes], device=device).repeat_interleave(n)
        ids = torch.tensor(unique, device=device)
        cache = None
        if ids.size(1) > 1:
            _, cache = forward(self.model, ids[:, :-1], None, self._kwarg, logits_to_keep=1)
            self.stats["encoded_tokens"] += ids[:, :-1].numel()
            cache.reorder_cache(rows)
        return cache, ids[rows, -1]


class VLLMChunkSampler:
    """Sample chunks with a vLLM engine (the GPU path): one request per prefix, ``n`` samples each.

    Each call sends the prefixes as token-id prompts (``{"prompt_token_ids":
    ...}``, vLLM's ``TokensPrompt``) with ``SamplingParams(n, max_tokens,
    temperature, top_p, top_k, seed, stop_token_ids)``; each request gets its
    own seed drawn from the caller's generator, so a seeded search is
    reproducible and no two chunks reuse a random stream. Enable prefix
    caching on the engine: the search re-sends the growing prefix each chunk
    and vLLM then reuses its cached KV blocks instead of recomputing them.
    ``sampling_params_cls`` defaults to ``vllm.SamplingParams`` (imported
    lazily; tests pass a fake's).
    """

    def __init__(self, llm: Any, sampling_params_cls: Any = None, lora_request: Any = None,
                 stop_ids: Sequence[int] | None = None):
        if sampling_params_cls is None:
            from vllm import SamplingParams as sampling_params_cls  # GPU environments only
        self.llm, self.lora_request, self._params_cls = llm, lora_request, sampling_params_cls
        self.tokenizer = llm.get_tokenizer()
        if stop_ids is None:
            stop_ids = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []
        self.stop_ids = sorted(set(int(t) for t in stop_ids))

    @classmethod
    def create(cls, model: str, lora_request: Any = None, **engine_kwargs: Any) -> "VLLMChunkSampler":
        """Start an engine (:func:`~demoscope.models.vllm_engine.start_llm`: prefix caching) and wrap it.

        Stop ids come from the model's generation config as well as its
        tokenizer (e.g. Llama-3's ``<|eot_id|>``, SmolLM2's ``<|im_end|>``).
        """
        from transformers import GenerationConfig

        from demoscope.models.vllm_engine import start_llm

        llm = start_llm(model, **engine_kwargs)
        stop_ids = [llm.get_tokenizer().eos_token_id]
        try:
            eos = GenerationConfig.from_pretrained(str(model)).eos_token_id
            stop_ids += [eos] if isinstance(eos, int) else list(eos or [])
        except OSError:
            pass  # no generation_config.json: the tokenizer's EOS is all there is
        return cls(llm, lora_request=lora_request, stop_ids=[t for t in stop_ids if t is not None])

    def sample_chunks(
        self, prefixes: Sequence[Sequence[int]], n: int, max_tokens: int, params: SamplingParams,
        generator: torch.Generator,
    ) -> list[list[Chunk]]:
        """For each prefix, ``n`` continuations of at most ``max_tokens`` tokens (see :class:`ChunkSampler`)."""
        prefixes = [list(p) for p in prefixes]
        _check_request(prefixes, n, max_tokens)
        if not prefixes:
            return []
        # vLLM refuses n > 1 with greedy sampling; the n greedy continuations are one continuation n times.
        copies, n = (n, 1) if params.temperature == 0 else (1, n)
        request_params = [
            self._params_cls(
                n=n, max_tokens=max_tokens, temperature=params.temperature, top_p=params.top_p,
                top_k=params.top_k if params.top_k is not None else -1,  # -1: off, in every vLLM version
                seed=draw_seed(generator), stop_token_ids=list(self.stop_ids),
            )
            for _ in prefixes
        ]
        prompts = [{"prompt_token_ids": p} for p in prefixes]
        outputs = self.llm.generate(prompts, request_params, lora_request=self.lora_request, use_tqdm=False)
        result = []
        for request in outputs:
            completions = sorted(request.outputs, key=lambda o: o.index)
            # finish_reason "stop": an EOS / stop token ended it (vLLM keeps that token in token_ids).
            result.append([Chunk(list(o.token_ids), o.finish_reason == "stop") for o in completions] * copies)
        return result
