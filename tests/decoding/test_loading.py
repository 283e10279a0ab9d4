"""load_models: the large model on its engine and the guide pair, in the three shapes a job or the server asks for."""

from contextlib import nullcontext

import pytest
import torch

from demoscope.decoding import Guide, load_guide, load_large_model, load_models
from demoscope.decoding.chunks import VLLMChunkSampler
from demoscope.decoding.guidance import AS_IS
from demoscope.models import load_causal_lm
from demoscope.models.names import resolve_model

TEXT = "The film was"


def logits(model, tokenizer, context=None) -> torch.Tensor:
    """Next-token logits after TEXT, run in ``context`` (a SmallModel's adapter selection)."""
    ids = torch.tensor([tokenizer(TEXT)["input_ids"]])
    with torch.no_grad(), context or nullcontext():
        return model(input_ids=ids).logits[0, -1]


@pytest.fixture(scope="module")
def plain():
    """The tiny Llama and tiny GPT-2 as they load without adapters: the reference answers."""
    llama, gpt2 = (load_causal_lm(resolve_model(f"tiny:{arch}")) for arch in ("llama", "gpt2"))
    return {"llama": logits(*llama), "gpt2": logits(*gpt2)}


def test_no_tuned_model_means_no_guide(plain):
    large, guide = load_models("tiny:llama", None, None, None)
    assert guide is None
    model, tokenizer = large  # Transformers: a (model, tokenizer) pair
    assert torch.allclose(logits(model, tokenizer), plain["llama"])


def test_tuned_adapter_gives_one_peft_model_with_its_adapter_on_and_off(random_adapter, plain):
    _, guide = load_models("tiny:gpt2", "tiny:llama", str(random_adapter), None, "Review: {raw_prompt}")
    assert isinstance(guide, Guide)
    assert guide.tuned.model is guide.untuned.model  # one model in memory
    assert (guide.tuned.adapter, guide.untuned.adapter) == ("tuned", None)
    assert guide.tuned.prompt("x") == guide.untuned.prompt("x") == "Review: x"
    model, tokenizer = guide.tuned.model, guide.tuned.tokenizer
    untuned = logits(model, tokenizer, guide.untuned.context())
    assert torch.allclose(untuned, plain["llama"], atol=1e-5)  # adapter off: the base model
    assert not torch.allclose(logits(model, tokenizer, guide.tuned.context()), untuned, atol=1e-3)
    same = load_guide("tiny:llama", str(random_adapter), "tiny:llama")  # naming the same base again: one model
    assert same.tuned.model is same.untuned.model and same.untuned.adapter is None


@pytest.mark.parametrize("with_adapter", [False, True])
def test_tuned_and_untuned_models_load_as_two(random_adapter, plain, with_adapter):
    adapter = str(random_adapter) if with_adapter else None
    _, guide = load_models("tiny:gpt2", "tiny:llama", adapter, "tiny:gpt2", "Q: {raw_prompt}")
    assert guide.tuned.model is not guide.untuned.model
    assert guide.tuned.adapter == guide.untuned.adapter == AS_IS  # each runs as loaded
    assert guide.untuned.prompt("x") == "Q: x"
    assert torch.allclose(logits(guide.untuned.model, guide.untuned.tokenizer), plain["gpt2"])
    tuned = logits(guide.tuned.model, guide.tuned.tokenizer)
    assert torch.allclose(tuned, plain["llama"], atol=1e-5) != with_adapter  # the adapter is on when given


def test_a_tuned_model_without_adapter_needs_an_untuned_one():
    with pytest.raises(ValueError, match="untuned model is needed"):
        load_guide("tiny:llama", None, None)


def test_vllm_backend_starts_a_chunk_sampler_on_the_resolved_model(monkeypatch):
    started = []

    def create(model, lora_request=None, **engine_kwargs):  # vLLM's engine start, faked
        started.append(model)
        return "sampler"

    monkeypatch.setattr(VLLMChunkSampler, "create", staticmethod(create))
    assert load_large_model("tiny:llama", "vllm") == "sampler"
    assert started == [resolve_model("tiny:llama")]
    large = load_large_model("tiny:llama", "transformers")
    assert isinstance(large, tuple) and started == [resolve_model("tiny:llama")]  # no engine for Transformers
