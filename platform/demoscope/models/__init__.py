"""Models: loading causal LMs, the offline tiny-model factory, option scorers."""

from demoscope.models.loading import load_causal_lm
from demoscope.models.scoring import (
    OptionScorer,
    TransformersOptionScorer,
    encode_prompts,
    letter_token_ids,
    option_distributions,
)
from demoscope.models.tiny import build_tiny_model, tiny_model
from demoscope.models.vllm_scoring import VLLMOptionScorer

__all__ = [
    "OptionScorer", "TransformersOptionScorer", "VLLMOptionScorer", "build_tiny_model", "encode_prompts",
    "letter_token_ids", "load_causal_lm", "option_distributions", "tiny_model",
]
