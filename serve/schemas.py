"""Typed HTTP schemas of the opinions API (they generate the OpenAPI docs at /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Subpopulation(BaseModel):
    """A group of people, rendered into the prompt with one of SubPOP's steering templates."""

    model_config = ConfigDict(extra="forbid")
    attribute: str = Field(..., examples=["POLIDEOLOGY"])
    group: str = Field(..., examples=["Liberal"])
    steering: Literal["QA", "BIO", "PORTRAY"] = "QA"


class OpinionItem(BaseModel):
    """One survey question to answer for one subpopulation (or under free steering text)."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., min_length=1, examples=["How much, if at all, do you worry about climate change?"])
    options: list[str] = Field(..., min_length=2, examples=[["A great deal", "Some", "Not too much", "Not at all"]])
    ordinal: list[float] | None = Field(None, description="ordinal position per option (-1: not on the scale); default 1..K")
    subpopulation: Subpopulation | None = None
    steering_text: str | None = Field(None, description="free text put before the question instead of a subpopulation")
    human: list[float] | None = Field(None, description="the humans' distribution over options, to get a Wasserstein distance")
    adapter: str | None = Field(None, description="LoRA adapter to use (GET /v1/models); default: the server's default")

    @model_validator(mode="after")
    def _consistent(self) -> "OpinionItem":
        if self.subpopulation is not None and self.steering_text is not None:
            raise ValueError("give either subpopulation or steering_text, not both")
        for name in ("ordinal", "human"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.options):
                raise ValueError(f"{name} has {len(values)} entries but there are {len(self.options)} options")
        if self.human is not None and (min(self.human) < 0 or sum(self.human) <= 0):
            raise ValueError("human must be non-negative shares with a positive sum")
        return self


class OpinionsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[OpinionItem] = Field(..., min_length=1)


class OpinionResult(BaseModel):
    distribution: list[float] = Field(..., description="the model's shares over the options (sum to 1)")
    option_mass: float = Field(..., description="probability the model put on the option letters before renormalising")
    model: str
    adapter: str | None
    wasserstein: float | None = Field(None, description="ordinal Wasserstein distance to `human` (null if not given or non-ordinal)")


class OpinionsResponse(BaseModel):
    results: list[OpinionResult]


class ModelInfo(BaseModel):
    model: str
    adapters: list[str]
    default_adapter: str | None
    backend: str
    max_items: int
    max_options: int
    max_prompt_tokens: int


class ErrorResponse(BaseModel):
    error: str
    detail: str | list | None = None


class GenerateRequest(BaseModel):
    """Prompts to continue with one weak-to-strong decoding method."""

    model_config = ConfigDict(extra="forbid")
    prompts: list[str] = Field(..., min_length=1, examples=[["The film opens with"]])
    method: str = Field("base", description="base, bon:N, cbs:W,K,L or eft:BETA", examples=["cbs:4,4,5"])
    temperature: float = Field(0.7, ge=0, description="0: greedy")
    top_k: int = Field(50, ge=0, description="0: off")
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(50, ge=1)
    seed: int | None = Field(1, description="same seed and prompt, same continuation")

    @model_validator(mode="after")
    def _non_empty(self) -> "GenerateRequest":
        for i, prompt in enumerate(self.prompts):
            if not prompt.strip():
                raise ValueError(f"prompts[{i}] is empty")
        return self


class Generated(BaseModel):
    prompt: str
    text: str = Field(..., description="the continuation")
    guidance: float | None = Field(None, description="sum log p_tuned - log p_untuned over the continuation")
    finish_reason: str = Field(..., description="stop (EOS) or length")
    tokens: int


class GenerateResponse(BaseModel):
    method: str
    model: str
    results: list[Generated]
