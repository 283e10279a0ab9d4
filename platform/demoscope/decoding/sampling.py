"""Sampling controls, logits warping and seeded token draws shared by every decoding method.

:func:`process_logits` is Hugging Face's temperature -> top-k -> top-p warper
chain (the order the reference's CBS builds it in, ``reference`` B.2).
:func:`sample_tokens` draws one token per row by inverting the CDF with
uniforms from a CPU :class:`torch.Generator`: the same distribution as the
reference's ``torch.multinomial``, but the random stream does not depend on
the device, and consumes exactly one uniform per row per step, so a search
that splits generation into chunks draws the same tokens as one long run.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

from demoscope.errors import ConfigError


@dataclass(frozen=True)
class SamplingParams:
    """How the large model samples; defaults are the controlled-sentiment setting (``reference`` B.4).

    ``temperature=0`` is greedy decoding (as in vLLM). ``top_k=None`` and
    ``top_p=1.0`` disable those filters; the reference's CBS uses top-k 50
    (its ``search()`` default) and HF ``generate`` (EFT) the same by
    default. ``seed=None`` draws fresh randomness on every call.
    """

    temperature: float = 0.7
    top_k: int | None = 50
    top_p: float = 1.0
    max_new_tokens: int = 50
    seed: int | None = 1

    def __post_init__(self) -> None:
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k must be None (off) or >= 1, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


def process_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Warp ``[rows, vocab]`` logits: divide by temperature, then top-k, then top-p (filtered to ``-inf``).

    Same rules as transformers' ``TemperatureLogitsWarper``,
    ``TopKLogitsWarper`` (ties with the k-th value are kept) and
    ``TopPLogitsWarper`` (drop the smallest tokens whose cumulative
    probability is at most ``1 - top_p``; always keep the top one).
    Returns float32. ``temperature=0`` leaves the scale alone (greedy picks
    the argmax anyway).
    """
    x = logits.float()
    if params.temperature not in (0.0, 1.0):
        x = x / params.temperature
    if params.top_k is not None and params.top_k < x.size(-1):
        kth = torch.topk(x, params.top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_x, order = torch.sort(x, dim=-1, descending=False)
        cumulative = sorted_x.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= 1 - params.top_p
        remove_sorted[..., -1:] = False
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        x = x.masked_fill(remove, float("-inf"))
    return x


def sample_tokens(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> torch.Tensor:
    """One token id per row of ``[rows, vocab]`` raw logits, warped by ``params``; a long tensor on the logits' device.

    Inverse-CDF sampling in float64 with one uniform per row from the CPU
    ``generator``; greedy (no draw) when ``temperature == 0``.
    """
    if params.temperature == 0.0:
        return logits.argmax(dim=-1)
    probs = process_logits(logits, params).double().softmax(dim=-1)
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.size(0), generator=generator, dtype=torch.float64).to(probs.device)
    # First index whose CDF exceeds u * total: never a zero-probability token.
    idx = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    return idx.clamp_(max=probs.size(-1) - 1)


def derive_seed(seed: int, key: str) -> int:
    """A 63-bit seed from ``seed`` and a string (e.g. the prompt), stable across processes and runs.

    Seeding each prompt from its own text makes a prompt's sample independent
    of which other prompts share its batch or Ray worker.
    """
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (``None``: a fresh non-deterministic seed)."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def draw_seed(generator: torch.Generator) -> int:
    """A 31-bit seed drawn from ``generator``, for engines (vLLM) that take an integer seed per request."""
    return int(torch.randint(0, 2**31 - 1, (), generator=generator))
