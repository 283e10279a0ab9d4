"""Benchmark: weak-to-strong decoding speed, our cached search against the original's re-encoding scorers.

    .venv/bin/python bench/decoding.py                                    # tiny set (see timings below)
    .venv/bin/python bench/decoding.py --models smollm2 --repeats 2       # the real SmolLM2-135M as the large model
    .venv/bin/python bench/decoding.py --models smollm2-lora --prompts 2 --repeats 1   # SmolLM2 guides too (slow)

In one run, on the same short IMDB-style prompts (the large model reads them
in ``IMDB_BASE_TEMPLATE``, the small models raw, as in the seed) with the
same per-prompt seeds (``derive_seed(seed, prompt)``, as ``generate`` does),
three variants of each method, chunk-level beam search CBS(W, K, L) (default
4, 4, 5) and best-of-N (default 16), 50 new tokens per prompt, T=0.7, top-k 50:
  no cache  nothing reused: ``TransformersChunkSampler(reuse_cache=False)``
            re-encodes every beam's prompt + response with the large model at
            every chunk, and :class:`ReencodingScorer` re-scores every beam's
            whole response from scratch with both small models
            (``guidance_scores``) at every chunk;
  original  the reference's scheme (``reference`` B.2, its ``decoders/cbs.py``),
            the baseline: the large model's KV cache is reordered between
            chunks, the small models re-score from scratch (:class:`ReencodingScorer`);
  ours      what ``generate`` runs by default: the sampler reorders its KV
            cache between chunks and ``GuidanceScorer`` feeds the small models
            only each chunk's new tokens.
Both go through ``chunk_beam_search`` with the search shape
``DecodingMethod.search_shape()`` gives (BoN-N is CBS(1, N, L=inf): one chunk
of the full length); ``generate`` has no seam for another scorer, so the loop
over prompts is written here, and ours is checked against ``generate`` itself
on the first prompt. Each variant runs ``--repeats`` times, interleaved, and
its best run is kept (the machine may be shared). Printed per model set and
method: the new tokens of the returned responses (counted, not assumed),
seconds, tokens/s, the ratio to the original, where the seconds went (large model,
guidance scoring, the rest: detokenising, selection) and the prefix tokens
the large model re-encoded; and the check that both variants return the
same texts for the same seeds, with the largest difference of the guidance
scores of the W kept beams (float rounding only: KV-cached and from-scratch
forwards sum in another order).

Model sets (``--models``, comma-separated):
  tiny          large = a tiny random Llama (hidden 256, 4 layers, 4 heads,
                vocab 2048); guide = the tiny random GPT-2s of seeds 1
                (tuned) and 2 (untuned), hidden 128, 2 layers, the large
                model's tokenizer;
  smollm2       large = the real SmolLM2-135M-Instruct (``smollm2:135m``);
                guide = the same tiny GPT-2 pair (another tokenizer, so every
                text is re-tokenized for the guide, as in a real
                cross-family pair); no other small model is available offline;
  smollm2-lora  large = SmolLM2-135M; guide = SmolLM2-135M with a seeded
                random LoRA adapter (r=8, q/v) on (tuned) and off (untuned):
                the shape of ``bench/real_model.sh w2s``, where the guide is
                as large as the steered model and scoring dominates.
Here (2 cores, torch 2 threads, an idle machine): ``tiny`` about 30 s with
the defaults, ``smollm2 --repeats 2`` about 3.5 min, ``smollm2-lora --prompts
2 --repeats 1`` about 3.5 min (model loading and warm-up included); a busy
machine stretches these several-fold.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from demoscope.decoding import (  # noqa: E402
    IMDB_BASE_TEMPLATE,
    DecodingMethod,
    GuidanceScorer,
    Guide,
    SamplingParams,
    SearchResult,
    TransformersChunkSampler,
    chunk_beam_search,
    derive_seed,
    generate,
    guidance_scores,
    make_generator,
)
from demoscope.decoding.lm import encode  # noqa: E402

# Openings of movie reviews, written for this benchmark in the style of the IMDB prompts the seed steers.
IMDB_PROMPTS = (
    "I went to see this film with my friends and",
    "The acting in this movie is",
    "After reading the book, I expected the film to",
    "My wife and I watched this last night, and",
    "From the opening scene it is clear that",
    "Honestly, the plot of this picture",
    "The director's previous work was",
    "This is one of those movies that",
)
VARIANTS = ("no cache", "original", "ours")


class ReencodingScorer:
    """GuidanceScorer's interface (reset/score/select) scored the original's way: every call from scratch.

    Each :meth:`score` runs both small models over every beam's prompt + whole
    response so far (:func:`~demoscope.decoding.guidance.guidance_scores`),
    so it keeps no state between chunks and :meth:`select` has nothing to
    reorder.
    """

    def __init__(self, guide: Guide):
        self.guide = guide
        self.raw_prompt = ""

    def reset(self, raw_prompt: str, rows: int = 1) -> None:
        """Remember the prompt; the row count does not matter when nothing is cached."""
        self.raw_prompt = raw_prompt

    def score(self, responses: Sequence[str], finished: Sequence[bool]) -> torch.Tensor:
        """Guidance score (float64) of each response, recomputed from scratch; ``finished`` adds the EOS term."""
        return guidance_scores(self.guide, self.raw_prompt, responses, finished)

    def select(self, rows: Sequence[int]) -> None:
        """Nothing to do: no per-beam state is kept."""


class TimedSampler:
    """Forwards to a chunk sampler and adds up the seconds spent in it: the large model's share of a run."""

    def __init__(self, inner: TransformersChunkSampler):
        self.inner, self.tokenizer, self.seconds = inner, inner.tokenizer, 0.0

    def sample_chunks(self, prefixes: Sequence[Sequence[int]], n: int, max_tokens: int, params: SamplingParams,
                      generator: torch.Generator) -> list:
        """``inner.sample_chunks``, timed."""
        start = time.perf_counter()
        try:
            return self.inner.sample_chunks(prefixes, n, max_tokens, params, generator)
        finally:
            self.seconds += time.perf_counter() - start


class TimedScorer:
    """Forwards reset/score/select to a scorer and adds up their seconds: the guidance scoring's share."""

    def __init__(self, inner: GuidanceScorer | ReencodingScorer):
        self.inner, self.seconds = inner, 0.0

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds += time.perf_counter() - start

    def reset(self, raw_prompt: str, rows: int = 1) -> None:
        """``inner.reset``, timed."""
        self._timed(self.inner.reset, raw_prompt, rows)

    def score(self, responses: Sequence[str], finished: Sequence[bool]) -> torch.Tensor:
        """``inner.score``, timed."""
        return self._timed(self.inner.score, responses, finished)

    def select(self, rows: Sequence[int]) -> None:
        """``inner.select``, timed."""
        self._timed(self.inner.select, rows)


@dataclass
class Run:
    """One variant's pass over the prompts: the search results, wall seconds and where they went."""

    results: list[SearchResult]
    seconds: float
    large_s: float
    guide_s: float
    reencoded: int  # prefix tokens the large model encoded (prompts included), from the sampler's stats

    @property
    def tokens(self) -> int:
        """New tokens in the returned responses (the stop token included when one ended a response)."""
        return sum(len(r.token_ids) for r in self.results)


@dataclass
class ModelSet:
    """A large model, its guide pair and how to describe them."""

    name: str
    model: Any
    tokenizer: Any
    guide: Guide
    large_desc: str
    guide_desc: str


def decode(variant: str, method: DecodingMethod, prompts: Sequence[str], model: Any, tokenizer: Any, guide: Guide,
           params: SamplingParams, seeds: Sequence[int], large_template: str = IMDB_BASE_TEMPLATE) -> Run:
    """Run ``method`` (BoN or CBS) over ``prompts`` one at a time, as ``generate`` does, with ``variant``'s parts.

    ``"ours"``: a cache-reusing sampler and :class:`GuidanceScorer` (``generate``'s
    defaults); ``"original"``: the cache-reusing sampler and :class:`ReencodingScorer`;
    ``"no cache"``: a sampler that re-encodes every prefix and :class:`ReencodingScorer`.
    A fresh sampler and scorer per pass, as each ``generate`` call builds its own.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    sampler = TimedSampler(TransformersChunkSampler(model, tokenizer, reuse_cache=variant != "no cache"))
    scorer = TimedScorer(GuidanceScorer(guide) if variant == "ours" else ReencodingScorer(guide))
    w, k, chunk_len = method.search_shape()
    results = []
    start = time.perf_counter()
    for raw_prompt, seed in zip(prompts, seeds):
        # add_special_tokens=False: the reference's (and generate's default) tokenization of the large prompt.
        prompt_ids = encode(tokenizer, large_template.format(raw_prompt=raw_prompt), False)
        results.append(chunk_beam_search(sampler, prompt_ids, scorer, raw_prompt, w, k, chunk_len, params,
                                         make_generator(seed)))
    seconds = time.perf_counter() - start
    return Run(results, seconds, sampler.seconds, scorer.seconds, sampler.inner.stats["encoded_tokens"])


def agreement(base: Run, other: Run) -> tuple[int, float]:
    """(prompts whose kept beams have the same texts in both runs, max |score difference| over those beams).

    Scores are compared only where the texts agree: different texts have
    unrelated scores. ``nan`` when no prompt agrees.
    """
    same, gaps = 0, []
    for a, b in zip(base.results, other.results):
        if a.final_texts == b.final_texts and a.token_ids == b.token_ids:
            same += 1
            gaps += [abs(x - y) for x, y in zip(a.final_scores, b.final_scores)]
    return same, max(gaps) if gaps else math.nan


def best_runs(repeats: int, jobs: dict[tuple[str, str], Callable[[], Run]]) -> dict[tuple[str, str], Run]:
    """Run every job ``repeats`` times, interleaved so a busy spell hits all of them; keep each one's fastest run."""
    best: dict[tuple[str, str], Run] = {}
    for _ in range(repeats):
        for key, job in jobs.items():
            run = job()
            if key not in best or run.seconds < best[key].seconds:
                best[key] = run
    return best


def _params(model: Any) -> float:
    """Parameters in millions."""
    return sum(p.numel() for p in model.parameters()) / 1e6


def _describe(model: Any) -> str:
    cfg = model.config
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", "?")
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", "?")
    return f"{cfg.model_type} hidden {hidden}, {layers} layers, vocab {cfg.vocab_size}, {_params(model):.2f}M params"


def tiny_guide() -> tuple[Guide, str]:
    """The tests' guide: tiny random GPT-2s of seeds 1 (tuned) and 2 (untuned), sharing the tiny tokenizer."""
    from demoscope.models import load_causal_lm, tiny_model

    tuned, tok = load_causal_lm(tiny_model("gpt2", seed=1), device="cpu")
    untuned, _ = load_causal_lm(tiny_model("gpt2", seed=2), device="cpu")
    return Guide.from_models(tuned, untuned, tok), f"tiny GPT-2 pair (seeds 1/2), each {_describe(tuned)}"


def lora_guide(path: str, seed: int = 0) -> tuple[Guide, str]:
    """``path``'s model with a seeded random LoRA adapter (r=8, q/v) as tuned, adapters off as untuned."""
    from peft import LoraConfig, get_peft_model

    from demoscope.models import load_causal_lm

    base, tok = load_causal_lm(path, device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # LoRA's A init draws from the global RNG: seed it without disturbing the caller
        with warnings.catch_warnings():  # peft calls a transformers API that warns of its v6 rename: not ours
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
                                        adapter_name="tuned")
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:  # B starts at zero (the identity); make the adapter change the scores
                    param.copy_(torch.randn(param.shape) * 0.02)
    peft_model.eval()
    desc = f"one {_describe(base)} + LoRA r=8 q/v on/off"
    return Guide.from_adapter(peft_model, "tuned", tok), desc


def load_set(name: str, tmp: Path) -> ModelSet:
    """Load model set ``name`` (``tiny``, ``smollm2``, ``smollm2-lora``); built models go under ``tmp``."""
    from demoscope.models import build_tiny_model, load_causal_lm
    from demoscope.models.names import resolve_model

    if name == "tiny":
        path = build_tiny_model(tmp / "llama-256", hidden_size=256, num_layers=4, num_heads=4)
        guide, guide_desc = tiny_guide()
    elif name == "smollm2":
        path = Path(resolve_model("smollm2:135m"))
        guide, guide_desc = tiny_guide()
    elif name == "smollm2-lora":
        path = Path(resolve_model("smollm2:135m"))
        guide, guide_desc = lora_guide(str(path))
    else:
        raise ValueError(f"unknown model set {name!r}; choose from tiny, smollm2, smollm2-lora")
    model, tokenizer = load_causal_lm(path, device="cpu")
    return ModelSet(name, model, tokenizer, guide, _describe(model), guide_desc)


def run_set(ms: ModelSet, methods: Sequence[DecodingMethod], prompts: Sequence[str], params: SamplingParams,
            repeats: int) -> dict[str, float]:
    """Time every variant of every method on one model set, print the table; returns ours/original per method."""
    seeds = [derive_seed(params.seed, p) for p in prompts]
    start = time.perf_counter()
    load = os.getloadavg()[0]
    print(f"\n[{ms.name}] large: {ms.large_desc}\n  guide: {ms.guide_desc}")
    print(f"  {len(prompts)} prompts, {params.max_new_tokens} new tokens max, T={params.temperature}, "
          f"top-k {params.top_k}, seed {params.seed}, best of {repeats} runs; tokens = new tokens of the returned "
          f"responses (the large model samples W*K or N rows of them)")

    def job(variant: str, method: DecodingMethod, some: Sequence[str], some_seeds: Sequence[int]) -> Callable:
        return lambda: decode(variant, method, some, ms.model, ms.tokenizer, ms.guide, params, some_seeds)

    # Warm-up on the first prompt (first forwards pay one-off costs), and the check that our loop is generate's.
    checked = {}
    for method in methods:
        job("original", method, prompts[:1], seeds[:1])()
        checked[method.label] = generate(method, prompts[:1], (ms.model, ms.tokenizer), ms.guide, params,
                                         large_template=IMDB_BASE_TEMPLATE, seeds=seeds[:1])[0]
    jobs = {(m.label, v): job(v, m, prompts, seeds) for m in methods for v in VARIANTS}
    best = best_runs(repeats, jobs)

    ratios = {}
    print(f"  {'method':<12} {'variant':<9} {'tokens':>6} {'seconds':>8} {'tokens/s':>9} {'vs original':>11}   "
          f"{'large':>7} {'guide':>7} {'rest':>6}  {'prefix re-encoded':>17}")
    for method in methods:
        base = best[(method.label, "original")]
        for variant in VARIANTS:
            run = best[(method.label, variant)]
            ratio = base.seconds / run.seconds
            rest = run.seconds - run.large_s - run.guide_s
            print(f"  {method.label:<12} {variant:<9} {run.tokens:>6} {run.seconds:>8.2f} "
                  f"{run.tokens / run.seconds:>9.1f} {ratio:>10.2f}x   {run.large_s:>6.2f}s {run.guide_s:>6.2f}s "
                  f"{rest:>5.2f}s  {run.reencoded:>17,}")
        ours = best[(method.label, "ours")]
        ratios[method.label] = base.seconds / ours.seconds
        same, diff = agreement(base, ours)
        gen = checked[method.label]
        first = ours.results[0]
        gen_ok = gen.text == first.text and gen.token_ids == first.token_ids and gen.guidance == first.score
        print(f"  {'':<12} guidance scoring alone: ours {base.guide_s / ours.guide_s:.2f}x the original's; "
              f"check: same texts on {same}/{len(prompts)} prompts, max |score ours - original| "
              f"{diff:.1e} over the kept beams; ours {'=' if gen_ok else '!='} generate() on prompt 1")
    print(f"  ({time.perf_counter() - start:.0f} s for this set incl. warm-up; load average {load:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after)")
    return ratios


def main() -> None:
    """Parse the arguments, run every model set, print a one-line verdict against the 3x target."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--models", default="tiny", help="comma-separated: tiny, smollm2, smollm2-lora")
    parser.add_argument("--prompts", type=int, default=4, help=f"how many prompts (at most {len(IMDB_PROMPTS)})")
    parser.add_argument("--max-new-tokens", type=int, default=50)
    parser.add_argument("--cbs", default="4,4,5", help="W,K,L of chunk-level beam search")
    parser.add_argument("--bon", type=int, default=16, help="N of best-of-N")
    parser.add_argument("--repeats", type=int, default=3, help="time each variant this many times, keep the best")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if not 1 <= args.prompts <= len(IMDB_PROMPTS):
        parser.error(f"--prompts must be 1..{len(IMDB_PROMPTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    methods = [DecodingMethod.parse(f"cbs:{args.cbs}"), DecodingMethod.parse(f"bon:{args.bon}")]
    params = SamplingParams(temperature=0.7, top_k=50, top_p=1.0, max_new_tokens=args.max_new_tokens, seed=args.seed)
    prompts = list(IMDB_PROMPTS[:args.prompts])
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"transformers {transformers.__version__}, load average {os.getloadavg()[0]:.2f}")
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            try:
                ms = load_set(name.strip(), Path(tmp))
            except ValueError as exc:
                parser.error(f"--models: {exc}")
            ratios = run_set(ms, methods, prompts, params, args.repeats)
            verdicts += [f"{name}/{label} {r:.2f}x ({'>=' if r >= 3 else '<'} 3x)" for label, r in ratios.items()]
    print("\nours/original: " + ", ".join(verdicts))


if __name__ == "__main__":
    main()
