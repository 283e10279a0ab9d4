"""Typed HTTP schemas of the opinions API (they generate the OpenAPI docs at /docs)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator


def _unicode(value: str) -> str:
    """Refuse lone UTF-16 surrogates (JSON allows ``"\\ud800"``): tokenizers raise on them, so they would be a 500."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone UTF-16 surrogate: not valid Unicode text") from None
    return value


# Every string the server reads goes through ``Text``, so a bad character is a 422 whatever the field.
Text = Annotated[str, AfterValidator(_unicode)]
# A prompt with at least one non-blank character; the pattern puts that rule in the OpenAPI schema too.
Prompt = Annotated[str, StringConstraints(pattern=r"\S"), AfterValidator(_unicode)]
# JSON's NaN/Infinity extensions are parsed by Python: refuse them where numbers feed arithmetic.
Finite = Annotated[float, Field(allow_inf_nan=False)]
Share = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Subpopulation(BaseModel):
    """A group of people, rendered into the prompt with one of SubPOP's steering templates."""

    model_config = ConfigDict(extra="forbid")
    attribute: Text = Field(..., examples=["POLIDEOLOGY"])
    group: Text = Field(..., examples=["Liberal"])
    steering: Literal["QA", "BIO", "PORTRAY"] = "QA"


class OpinionItem(BaseModel):
    """One survey question to answer for one subpopulation (or under free steering text)."""

    model_config = ConfigDict(extra="forbid")
    question: Prompt = Field(..., examples=["How much, if at all, do you worry about climate change?"])
    options: list[Text] = Field(..., min_length=2, examples=[["A great deal", "Some", "Not too much", "Not at all"]])
    ordinal: list[Finite] | None = Field(None, description="ordinal position per option (-1: not on the scale); "
                                                        "default 1..K; exactly one entry per option")
    subpopulation: Subpopulation | None = None
    steering_text: Text | None = Field(None, description="free text put before the question instead of a subpopulation")
    human: list[Share] | None = Field(None, description="the humans' distribution over options, to get a Wasserstein "
                                                      "distance; exactly one non-negative share per option, "
                                                      "positive sum")
    adapter: Text | None = Field(None, description="LoRA adapter to use (GET /v1/models); "
                                                   "default: the server's default")

    @model_validator(mode="after")
    def _consistent(self) -> "OpinionItem":
        if self.subpopulation is not None and self.steering_text is not None:
            raise ValueError("give either subpopulation or steering_text, not both")
        for name in ("ordinal", "human"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.options):
                raise ValueError(f"{name} has {len(values)} entries but there are {len(self.options)} options")
        # Finite shares can still overflow when summed (two of 1e308): that sum would zero the distribution.
        if self.human is not None and not (0 < sum(self.human) < math.inf):
            raise ValueError("human must be non-negative shares with a positive, finite sum")
        return self


class OpinionsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[OpinionItem] = Field(..., min_length=1)


class OpinionResult(BaseModel):
    distribution: list[float] = Field(..., description="the model's shares over the options (sum to 1)")
    option_mass: float = Field(..., description="probability the model put on the option letters before renormalising")
    model: str
    adapter: str | None
    wasserstein: float | None = Field(None, description="ordinal Wasserstein distance to `human` "
                                                        "(null if not given or non-ordinal)")


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
    prompts: list[Prompt] = Field(..., min_length=1, examples=[["The film opens with"]])
    method: Text = Field("base", description="base, bon:N, cbs:W,K,L or eft:BETA", examples=["cbs:4,4,5"])
    temperature: float = Field(0.7, ge=0, allow_inf_nan=False, description="0: greedy")
    top_k: int = Field(50, ge=0, description="0: off")
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(50, ge=1)
    seed: int | None = Field(1, description="same seed and prompt, same continuation")


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


class Question(BaseModel):
    """A shipped codebook question, ready to send as an item (refusal-type options carry ordinal -1)."""

    key: str = Field(..., examples=["CARRYGUN_W26"])
    question: str
    options: list[str]
    ordinal: list[float] = Field(..., description="one entry per option; -1: not on the scale (e.g. Refused)")


class QuestionsResponse(BaseModel):
    """``GET /v1/questions``: the shipped codebook's questions matching the filter."""

    codebook: str
    total: int = Field(..., description="questions matching the filter (the list holds at most `limit`)")
    questions: list[Question]


class Group(BaseModel):
    """One of SubPOP's subpopulations, as an item's ``subpopulation`` names it."""

    attribute: str = Field(..., examples=["POLPARTY"])
    group: str = Field(..., examples=["Democrat"])


class SubpopulationsResponse(BaseModel):
    """``GET /v1/subpopulations``: SubPOP's 22 or 61 groups."""

    set: Literal["22", "61"]
    subpopulations: list[Group]
