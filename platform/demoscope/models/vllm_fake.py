"""A faithful fake of the slice of vLLM's offline API that Demoscope uses, for CPU tests.

In the style of Ray Serve LLM's ``MockVLLMEngine``: same call signature
(``LLM.generate(prompts, sampling_params, lora_request=..., use_tqdm=...)``),
same output shape (``RequestOutput.outputs[0].logprobs[step][token_id].logprob``),
same validation (``logprobs`` above the engine's ``max_logprobs`` raises; so
does a LoRA request on an engine without LoRA), but every number comes from
a real Hugging Face model: the logprobs are the true next-token log-softmax
("raw_logprobs", vLLM V1's default), top-k by value plus the sampled token.
Prompts are tokenised as vLLM does, with the tokenizer's special tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from demoscope.models.scoring import adapter_context


@dataclass
class FakeSamplingParams:
    """The ``vllm.SamplingParams`` fields we use, validated as vLLM validates them."""

    n: int = 1
    temperature: float = 1.0
    max_tokens: int | None = 16
    logprobs: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}.")
        if self.temperature < 0.0:
            raise ValueError(f"temperature must be non-negative, got {self.temperature}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if self.logprobs is not None and self.logprobs != -1 and self.logprobs < 0:
            raise ValueError(f"logprobs must be non-negative or -1, got {self.logprobs}.")


@dataclass(frozen=True)
class FakeLogprob:
    """``vllm.logprobs.Logprob``: a token's log-probability, 1-based rank, and text."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass(frozen=True)
class FakeLoRARequest:
    """``vllm.lora.request.LoRARequest``: the fake serves the PEFT adapter named ``lora_name``."""

    lora_name: str
    lora_int_id: int
    lora_path: str = ""


@dataclass
class FakeCompletionOutput:
    """``vllm.outputs.CompletionOutput``: one generated sequence."""

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, FakeLogprob]] | None
    finish_reason: str = "length"


@dataclass
class FakeRequestOutput:
    """``vllm.outputs.RequestOutput``: a prompt and its completions."""

    request_id: str
    prompt: str
    prompt_token_ids: list[int]
    outputs: list[FakeCompletionOutput]
    prompt_logprobs: None = None
    finished: bool = True


@dataclass
class FakeLLM:
    """``vllm.LLM`` over a Hugging Face ``model`` (PEFT adapters act as LoRA modules).

    ``max_logprobs`` defaults to vLLM's 20; ``seed`` seeds sampling for
    requests without their own ``SamplingParams.seed``. Generation runs one
    full forward per token (no cache): the fake is for correctness, not speed.
    """

    model: Any
    tokenizer: Any
    max_logprobs: int = 20
    seed: int = 0
    _requests: int = field(default=0, init=False)

    def get_tokenizer(self) -> Any:
        """The tokenizer, as ``vllm.LLM.get_tokenizer()`` returns it."""
        return self.tokenizer

    def generate(
        self, prompts: str | Sequence[str], sampling_params: FakeSamplingParams | None = None,
        lora_request: FakeLoRARequest | None = None, use_tqdm: bool = False,
    ) -> list[FakeRequestOutput]:
        """Complete each prompt; outputs in prompt order, shaped like vLLM's ``RequestOutput``."""
        params = sampling_params or FakeSamplingParams()
        self._validate(params, lora_request)
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        adapter = lora_request.lora_name if lora_request is not None else None
        results = []
        with torch.inference_mode(), adapter_context(self.model, adapter):
            for prompt in prompts:
                prompt_ids = self.tokenizer(prompt)["input_ids"]  # vLLM adds the tokenizer's special tokens
                outputs = [self._complete(prompt_ids, params, index) for index in range(params.n)]
                results.append(FakeRequestOutput(str(self._requests), prompt, prompt_ids, outputs))
                self._requests += 1
        return results

    def _validate(self, params: FakeSamplingParams, lora_request: FakeLoRARequest | None) -> None:
        vocab = self.model.config.vocab_size
        max_allowed = vocab if self.max_logprobs == -1 else self.max_logprobs
        if params.logprobs:
            requested = vocab if params.logprobs == -1 else params.logprobs
            if requested > max_allowed:
                raise ValueError(f"Requested sample logprobs of {requested}, which is greater than max allowed: {max_allowed}")
        if lora_request is not None:
            from peft import PeftModel

            if not isinstance(self.model, PeftModel):
                raise ValueError(f"Got lora_request {lora_request} but LoRA is not enabled!")
            if lora_request.lora_int_id < 1:
                raise ValueError(f"lora_int_id must be > 0, got {lora_request.lora_int_id}")

    def _complete(self, prompt_ids: list[int], params: FakeSamplingParams, index: int) -> FakeCompletionOutput:
        seed = params.seed if params.seed is not None else self.seed + self._requests
        generator = torch.Generator().manual_seed(seed + 7919 * index)
        ids, steps, total, finish = list(prompt_ids), [], 0.0, "length"
        for _ in range(params.max_tokens or 16):
            logits = self.model(input_ids=torch.tensor([ids], device=self.model.device)).logits[0, -1].float().cpu()
            logp = torch.log_softmax(logits, dim=-1)
            if params.temperature == 0.0:
                token = int(logp.argmax())
            else:
                token = int(torch.multinomial(torch.softmax(logits / params.temperature, -1), 1, generator=generator))
            total += float(logp[token])
            if params.logprobs is not None:
                steps.append(self._top_logprobs(logp, token, params.logprobs))
            ids.append(token)
            if token == self.tokenizer.eos_token_id:
                finish = "stop"
                break
        generated = ids[len(prompt_ids):]
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        return FakeCompletionOutput(index, text, generated, total, steps if params.logprobs is not None else None, finish)

    def _top_logprobs(self, logp: torch.Tensor, sampled: int, k: int) -> dict[int, FakeLogprob]:
        """The top-``k`` tokens by logprob (ranks 1..k), plus the sampled token with its own rank."""
        k = logp.numel() if k == -1 else k
        values, ids = torch.topk(logp, k) if k > 0 else (torch.empty(0), torch.empty(0, dtype=torch.long))
        texts = self.tokenizer.batch_decode([[t] for t in ids.tolist()])
        out = {
            t: FakeLogprob(v, rank, text)
            for rank, (v, t, text) in enumerate(zip(values.tolist(), ids.tolist(), texts), start=1)
        }
        if sampled not in out:
            rank = int((logp > logp[sampled]).sum()) + 1
            out[sampled] = FakeLogprob(float(logp[sampled]), rank, self.tokenizer.decode([sampled]))
        return out
