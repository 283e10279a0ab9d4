"""One entry point for the weak-to-strong decoding methods: base, BoN, CBS and EFT (``reference`` B.2-B.4).

:func:`generate` runs a :class:`DecodingMethod` over prompts, one prompt at a
time (as the reference does), and returns per prompt the response text, the
large model's token ids and the response's guidance score (always computed
on the finished response, so methods are comparable). Seeds are derived from
each prompt's text, so a prompt's sample does not depend on how prompts are
batched or sharded across workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from demoscope.decoding.chunks import ChunkSampler, TransformersChunkSampler
from demoscope.decoding.eft import eft_sample
from demoscope.decoding.guidance import GuidanceScorer, Guide, guidance_scores
from demoscope.decoding.lm import encode, response_text
from demoscope.decoding.sampling import SamplingParams, derive_seed, make_generator
from demoscope.decoding.search import chunk_beam_search
from demoscope.errors import ConfigError

METHOD_NAMES = ("base", "bon", "cbs", "eft")
# The controlled-sentiment base-model prompt (``reference`` B.4); the small models see the raw prompt.
IMDB_BASE_TEMPLATE = "Here is a movie review from imdb: {raw_prompt}"


@dataclass(frozen=True)
class DecodingMethod:
    """A decoding method and its knobs: ``bon`` uses ``n``; ``cbs`` uses ``w``, ``k``, ``l``; ``eft`` uses ``beta``.

    Defaults are the seed's: BoN-16, CBS W,K,L = 4,4,5, EFT beta 1.0.
    ``l=None`` is an unbounded chunk.
    """

    name: str
    n: int = 16
    w: int = 4
    k: int = 4
    l: int | None = 5  # noqa: E741 - the public field/keyword (``DecodingMethod("cbs", l=5)``), CBS's L
    beta: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in METHOD_NAMES:
            raise ConfigError(f"unknown decoding method {self.name!r}; expected one of {', '.join(METHOD_NAMES)}")
        if self.n < 1 or self.w < 1 or self.k < 1:
            raise ConfigError(f"{self.name}: N, W and K must be >= 1 (got N={self.n}, W={self.w}, K={self.k})")
        if self.l is not None and self.l < 1:
            raise ConfigError(f"{self.name}: L must be >= 1 or None, got {self.l}")

    @property
    def label(self) -> str:
        """A short name for output folders and reports: ``base``, ``bon16``, ``cbs-w4k4l5``, ``eft-beta1.0``."""
        if self.name == "bon":
            return f"bon{self.n}"
        if self.name == "cbs":
            return f"cbs-w{self.w}k{self.k}l{'inf' if self.l is None else self.l}"
        if self.name == "eft":
            return f"eft-beta{self.beta}"
        return "base"

    def search_shape(self) -> tuple[int, int, int | None]:
        """The CBS (W, K, L) this method is: base (1, 1, inf), BoN (1, N, inf), CBS (W, K, L); EFT has none."""
        if self.name == "eft":
            raise ConfigError("EFT is token-level mixing, not a chunk search")
        return {"base": (1, 1, None), "bon": (1, self.n, None)}.get(self.name, (self.w, self.k, self.l))

    @classmethod
    def parse(cls, text: str) -> "DecodingMethod":
        """Parse ``base``, ``bon`` / ``bon:32`` / ``bon32``, ``cbs`` / ``cbs:4,4,5`` (L may be ``inf``), ``eft:0.5``."""
        name, _, arg = text.strip().lower().partition(":")
        if name.startswith("bon") and name[3:].isdigit():
            name, arg = "bon", name[3:]
        try:
            if name == "bon" and arg:
                return cls("bon", n=int(arg))
            if name == "cbs" and arg:
                w, k, chunk_len = (p.strip() for p in arg.split(","))
                return cls("cbs", w=int(w), k=int(k), l=None if chunk_len in ("inf", "none") else int(chunk_len))
            if name == "eft" and arg:
                return cls("eft", beta=float(arg))
        except ValueError:
            raise ConfigError(f"cannot parse decoding method {text!r}; e.g. bon:32, cbs:4,4,5, eft:1.0") from None
        if arg and name not in ("bon", "cbs", "eft"):
            raise ConfigError(f"decoding method {name!r} takes no argument (got {text!r})")
        return cls(name)


# The configurations of the controlled-sentiment experiment (seed 002).
SEED_METHODS = (
    DecodingMethod("base"),
    DecodingMethod("bon", n=16),
    DecodingMethod("bon", n=32),
    DecodingMethod("cbs", w=4, k=4, l=5),
    DecodingMethod("eft", beta=1.0),
)


@dataclass
class Generation:
    """One prompt's result: response text, the large model's response token ids, guidance score, why it stopped."""

    prompt: str
    text: str
    token_ids: list[int]
    guidance: float | None
    finish_reason: str  # "stop": EOS; "length": max_new_tokens
    method: str


def _large(large: ChunkSampler | tuple[Any, Any]) -> ChunkSampler:
    if isinstance(large, tuple):
        model, tokenizer = large
        return TransformersChunkSampler(model, tokenizer)
    return large


def generate(
    method: DecodingMethod | str,
    prompts: Sequence[str],
    large: ChunkSampler | tuple[Any, Any],
    guide: Guide | None = None,
    params: SamplingParams | None = None,
    large_template: str = "{raw_prompt}",
    add_special_tokens: bool = False,
    seeds: Sequence[int] | None = None,
) -> list[Generation]:
    """Decode each raw prompt with ``method``; returns one :class:`Generation` per prompt, in order.

    ``large`` is a :class:`ChunkSampler` (e.g. :class:`TransformersChunkSampler`
    or :class:`~demoscope.decoding.chunks.VLLMChunkSampler`) or a
    ``(model, tokenizer)`` pair. Its prompt is ``large_template`` filled with
    the raw prompt and tokenized with ``add_special_tokens`` (the reference:
    ``False``); the guide's small models use their own templates. ``guide``
    is required for ``bon``, ``cbs`` and ``eft``; for ``base`` it only adds
    the guidance score. EFT needs the large model's logits, so a
    Transformers sampler (or pair). ``seeds[i]`` overrides prompt i's seed
    (else derived from ``params.seed`` and the prompt text).
    """
    method = DecodingMethod.parse(method) if isinstance(method, str) else method
    params = params or SamplingParams()
    sampler = _large(large)
    if guide is None and method.name != "base":
        raise ConfigError(f"{method.label} needs a guide (the tuned and untuned small models)")
    if seeds is not None and len(seeds) != len(prompts):
        raise ConfigError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
    if method.name == "eft" and not isinstance(sampler, TransformersChunkSampler):
        raise ConfigError(
            "EFT mixes the large model's per-step logits; run the large model with transformers, not vLLM"
        )
    tokenizer = sampler.tokenizer
    scorer = GuidanceScorer(guide) if guide is not None and method.name in ("bon", "cbs") else None
    results = []
    for i, raw_prompt in enumerate(prompts):
        if seeds is not None:
            seed = seeds[i]
        else:
            seed = None if params.seed is None else derive_seed(params.seed, raw_prompt)
        generator = make_generator(seed)
        prompt_ids = encode(tokenizer, large_template.format(raw_prompt=raw_prompt), add_special_tokens)
        if not prompt_ids:
            raise ConfigError(f"prompt {raw_prompt!r} encodes to no tokens; use add_special_tokens=True for a BOS")
        if method.name == "eft":
            ids, eos = eft_sample(
                sampler.model, tokenizer, guide, raw_prompt, method.beta, params, generator,
                large_template=large_template, add_special_tokens=add_special_tokens,
            )
            text, score, reason = response_text(tokenizer, prompt_ids, ids), None, "stop" if eos else "length"
        else:
            w, k, chunk_len = method.search_shape()
            found = chunk_beam_search(sampler, prompt_ids, scorer, raw_prompt, w, k, chunk_len, params, generator)
            ids, text, score, reason = found.token_ids, found.text, found.score, found.finish_reason
        if score is None and guide is not None:
            score = float(guidance_scores(guide, raw_prompt, [text], [True])[0])
        results.append(Generation(raw_prompt, text, list(ids), score, reason, method.label))
    return results
