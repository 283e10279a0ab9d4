"""Loading the models weak-to-strong decoding runs: the large model on its engine and the small guide pair.

Shared by ``demoscope generate`` (Ray Data actors) and the Serve
deployment's ``/v1/generate``, so both decode with the same models.
"""

from __future__ import annotations

from typing import Any

from demoscope.decoding.chunks import ChunkSampler, VLLMChunkSampler
from demoscope.decoding.guidance import Guide, SmallModel
from demoscope.models.loading import load_causal_lm
from demoscope.models.names import resolve_model


def load_large_model(model: str, backend: str = "transformers") -> ChunkSampler | tuple[Any, Any]:
    """The large model for :func:`~demoscope.decoding.methods.generate`, on ``backend``.

    The one place that picks the generation engine: ``"vllm"`` gives a
    :class:`~demoscope.decoding.chunks.VLLMChunkSampler` (prefix caching on
    GPU), ``"transformers"`` a ``(model, tokenizer)`` pair (also what EFT
    needs: per-step logits). Resolve ``"auto"`` first with
    :func:`demoscope.models.names.choose_backend`. ``model`` is any name
    :func:`~demoscope.models.names.resolve_model` takes.
    """
    path = resolve_model(model)
    if backend == "vllm":
        return VLLMChunkSampler.create(path)
    return load_causal_lm(path)


def load_guide(tuned: str, tuned_adapter: str | None, untuned: str | None,
               small_template: str = "{raw_prompt}") -> Guide:
    """The small tuned/untuned pair: one PEFT model with its adapter on/off, or two models.

    With ``tuned_adapter`` and no other ``untuned`` model (``None`` or the
    same name as ``tuned``), the untuned model is the tuned one with the
    adapter switched off: one model in memory. Otherwise ``tuned`` (with
    ``tuned_adapter`` applied, if given) and ``untuned`` load separately and
    may have different tokenizers.
    """
    if tuned_adapter and untuned in (None, tuned):
        small, tokenizer = load_causal_lm(resolve_model(tuned), adapters={"tuned": tuned_adapter})
        return Guide.from_adapter(small, "tuned", tokenizer, small_template)
    if untuned is None:
        raise ValueError("an untuned model is needed when the tuned model has no adapter to switch off")
    tuned_lm, tuned_tok = load_causal_lm(resolve_model(tuned),
                                         adapters={"tuned": tuned_adapter} if tuned_adapter else None)
    untuned_lm, untuned_tok = load_causal_lm(resolve_model(untuned))
    return Guide(SmallModel(tuned_lm, tuned_tok, small_template), SmallModel(untuned_lm, untuned_tok, small_template))


def load_models(model: str, tuned: str | None, tuned_adapter: str | None, untuned: str | None,
                small_template: str = "{raw_prompt}",
                backend: str = "transformers") -> tuple[ChunkSampler | tuple[Any, Any], Guide | None]:
    """``(large, guide)``: :func:`load_large_model` and :func:`load_guide` (``None`` without ``tuned``)."""
    large = load_large_model(model, backend)
    return large, None if tuned is None else load_guide(tuned, tuned_adapter, untuned, small_template)
