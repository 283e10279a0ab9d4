"""Weak-to-strong decoding: a large model steered by a small tuned/untuned pair (``reference`` B).

Chunk-level beam search, best-of-N and emulated fine-tuning for any Hugging
Face causal LMs, the guidance score that ranks beams (exact incremental KV
caching, different tokenizers allowed for the small models), and the gold
reward used to evaluate the results. The large model runs behind the
:class:`ChunkSampler` seam: Transformers here, vLLM on GPU nodes
(:func:`load_models` picks the engine and loads the guide pair).
"""

from demoscope.decoding.chunks import Chunk, ChunkSampler, TransformersChunkSampler, VLLMChunkSampler
from demoscope.decoding.eft import eft_sample, eft_scores
from demoscope.decoding.guidance import (
    GuidanceScorer,
    Guide,
    IncrementalLogProb,
    SmallModel,
    guidance_scores,
    response_logprobs,
)
from demoscope.decoding.loading import load_guide, load_large_model, load_models
from demoscope.decoding.methods import (
    IMDB_BASE_TEMPLATE,
    SEED_METHODS,
    DecodingMethod,
    Generation,
    generate,
)
from demoscope.decoding.reward import gold_rewards, label_index, load_reward_model
from demoscope.decoding.sampling import SamplingParams, derive_seed, make_generator, process_logits, sample_tokens
from demoscope.decoding.search import SearchResult, chunk_beam_search

__all__ = [
    "Chunk", "ChunkSampler", "DecodingMethod", "Generation", "GuidanceScorer", "Guide", "IMDB_BASE_TEMPLATE",
    "IncrementalLogProb", "SEED_METHODS", "SamplingParams", "SearchResult", "SmallModel", "TransformersChunkSampler",
    "VLLMChunkSampler", "chunk_beam_search", "derive_seed", "eft_sample", "eft_scores", "generate",
    "gold_rewards", "guidance_scores", "label_index", "load_guide", "load_large_model", "load_models",
    "load_reward_model", "make_generator", "process_logits", "response_logprobs", "sample_tokens",
]
