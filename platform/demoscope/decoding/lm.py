"""Model-call plumbing shared by the samplers, the guidance scorer and EFT.

One forward helper that takes and returns a KV cache whatever the installed
transformers calls it, the stop/pad token ids a model generates with, the
reference's prompt/response text split, and the vocabulary check EFT needs.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from demoscope.errors import ModelError


def cache_kwarg(model: Any) -> str:
    """The forward keyword that takes a KV cache: ``cache`` (transformers 5) or ``past_key_values`` (4.x).

    transformers 5 renamed ``forward(past_key_values=)`` to ``forward(cache=)``
    (the old name warns); vLLM's GPU environment pins an older transformers,
    so we read the signature, as ``demoscope.models.scoring`` does.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def forward(
    model: Any,
    input_ids: torch.Tensor,
    cache: Any = None,
    kwarg: str | None = None,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    logits_to_keep: int | None = None,
) -> tuple[torch.Tensor, Any]:
    """One forward pass with ``use_cache=True``; returns ``(logits, cache)``, the cache extended in place.

    ``cache=None`` starts a new cache. ``logits_to_keep=1`` projects only the
    last position onto the vocabulary (prefill that only needs the cache).
    """
    extra: dict[str, Any] = {}
    if cache is not None:
        extra[kwarg or cache_kwarg(model)] = cache
    if attention_mask is not None:
        extra["attention_mask"] = attention_mask
    if position_ids is not None:
        extra["position_ids"] = position_ids
    if logits_to_keep is not None:
        extra["logits_to_keep"] = logits_to_keep
    out = model(input_ids=input_ids, use_cache=True, **extra)
    new_cache = out["cache"] if "cache" in out else out["past_key_values"]
    return out.logits, new_cache


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Token ids that end a response: the tokenizer's EOS plus the generation config's (e.g. Llama-3's ``<|eot_id|>``).

    The reference stops on ``generation_config.eos_token_id`` (HF's
    ``EosTokenCriteria``); the tokenizer's EOS is added so a model whose
    generation config names none still stops.
    """
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos is not None:
        ids.update(int(t) for t in eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if not ids:
        raise ModelError(
            f"model {getattr(tokenizer, 'name_or_path', '')!r} defines no EOS token; cannot tell when a response ends"
        )
    return sorted(ids)


def pad_token_id(model: Any, tokenizer: Any) -> int:
    """The id appended to finished rows: generation config's pad, else the tokenizer's, else the first stop id."""
    pad = getattr(getattr(model, "generation_config", None), "pad_token_id", None)
    if pad is None:
        pad = tokenizer.pad_token_id
    if pad is None:
        pad = stop_token_ids(model, tokenizer)[0]
    return int(pad[0] if isinstance(pad, (list, tuple)) else pad)


def encode(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    """``tokenizer(text)["input_ids"]`` as a plain list."""
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def response_text(tokenizer: Any, prompt_ids: Sequence[int], response_ids: Sequence[int]) -> str:
    """The response's text: ``decode(prompt + response)`` minus ``decode(prompt)``, special tokens dropped.

    This is the reference's ``split_by_prompt_text`` rule: decoding the
    response alone would lose the leading space SentencePiece tokenizers fold
    into a word's first piece. Special tokens (EOS, pads) in the response are
    removed first, as the reference's re-encode/decode with
    ``skip_special_tokens`` does. If the decoded prompt is not a prefix of the
    decoded whole (a tokenizer whose decode is not prefix-stable), the
    response is decoded alone.
    """
    special = set(tokenizer.all_special_ids)
    ids = [t for t in response_ids if t not in special]
    if not ids:
        return ""
    kwargs = {"skip_special_tokens": False, "clean_up_tokenization_spaces": False}
    prompt_text = tokenizer.decode(list(prompt_ids), **kwargs)
    full = tokenizer.decode(list(prompt_ids) + ids, **kwargs)
    if full.startswith(prompt_text):
        return full[len(prompt_text):]
    return tokenizer.decode(ids, **kwargs)


def check_same_vocabulary(**tokenizers: Any) -> None:
    """Raise :class:`ModelError` unless all tokenizers map the same strings to the same ids.

    Stricter than the reference's ``same_tokenizer`` (which compares vocab
    sizes only): the whole ``get_vocab()`` mapping must match.
    """
    (first_name, first), *rest = tokenizers.items()
    vocab = first.get_vocab()
    for name, tok in rest:
        other = tok.get_vocab()
        if other != vocab:
            differ = len(set(vocab.items()) ^ set(other.items()))
            raise ModelError(
                f"EFT needs one shared vocabulary (the same token ids go to every model at every step), but the "
                f"{first_name} tokenizer ({len(vocab)} tokens) and the {name} tokenizer ({len(other)} tokens) "
                f"differ in {differ} entries; use CBS or BoN, which re-tokenize text for the small models"
            )
