"""What every job config shares: the base model (unknown keys are errors) and settings types several jobs use.

Each job's config lives beside the job (``demoscope.pipelines.<job>``,
``demoscope.tune.<job>``, ``demoscope.serve.config``); field descriptions
double as the ``--help`` text of their flags.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class JobConfig(BaseModel):
    """A job's settings: typed, validated, and strict about unknown keys (a typo is an error, not a default)."""

    model_config = ConfigDict(extra="forbid")


# How the vLLM backend reads answer letters (evaluate, distill-opinions, serve); see demoscope.models.vllm_scoring.
LetterLogprobs = Annotated[Literal["auto", "exact", "top-k"], Field(
    description="vLLM only: exact letter log-probs (logprob_token_ids), or the top-k ones where a letter outside "
                "counts 0 (SubPOP's rule with top_k=128); auto: exact where the installed vLLM can")]


class GuideModels(JobConfig):
    """Weak-to-strong decoding's models: the large one and the small tuned/untuned pair that steers it.

    ``demoscope generate`` and the Serve application's ``/v1/generate`` both
    take these settings (their configs extend this one); a job loads them with
    :func:`demoscope.decoding.load_models`.
    """

    model: str | None = Field(None, description="the large model (Hugging Face id, local path, tiny:llama)")
    large_template: str = Field("{raw_prompt}", description="the large model's prompt ({raw_prompt} is the prompt)")
    tuned: str | None = Field(None, description="small tuned model (id/path); with tuned_adapter, the base it adapts")
    tuned_adapter: str | None = Field(None, description="LoRA adapter of the small tuned model (untuned = adapter off)")
    untuned: str | None = Field(None, description="small untuned model (default with tuned_adapter: the same base)")
    small_template: str = Field("{raw_prompt}", description="the small models' prompt")
