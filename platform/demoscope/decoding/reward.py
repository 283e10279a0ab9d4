"""Gold reward: a sequence classifier's logit margin on prompt + response (``reference`` B.4).

The controlled-sentiment evaluation scores ``raw_prompt + response`` (the
prompt without the large model's template) with ``lvwerra/distilbert-imdb``
and reports ``logit[POSITIVE] - logit[NEGATIVE]`` (= log p(pos) - log p(neg)),
averaged over prompts. Any Hugging Face sequence classifier works here; the
two label indices are configurable, or given by name through the model's
``id2label``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from demoscope.errors import ModelError

# A tokenizer's model_max_length above this is a "no limit" sentinel, not a real limit.
_NO_LIMIT = 1_000_000


def label_index(classifier: Any, label: int | str) -> int:
    """The output index of ``label``: an int is checked against ``num_labels``, a name looked up in ``id2label``."""
    config = classifier.config
    if isinstance(label, str):
        names = {str(v).lower(): int(k) for k, v in config.id2label.items()}
        if label.lower() not in names:
            raise ModelError(f"classifier has no label {label!r}; its labels are {sorted(config.id2label.values())}")
        return names[label.lower()]
    if not 0 <= label < config.num_labels:
        raise ModelError(f"label index {label} out of range for a classifier with {config.num_labels} labels")
    return int(label)


def load_reward_model(path: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """Load ``(classifier, tokenizer)`` for :func:`gold_rewards` (safetensors only, eval mode)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(path), use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except OSError as exc:
        raise ModelError(f"cannot load reward model {str(path)!r}: {exc}") from None
    return model.to(device).eval(), tokenizer


def gold_rewards(
    classifier: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    responses: Sequence[str],
    positive: int | str = 1,
    negative: int | str = 0,
    batch_size: int = 32,
    max_length: int | None = None,
) -> np.ndarray:
    """``logit[positive] - logit[negative]`` of ``classifier`` on each ``prompt + response``; float64 array.

    Texts are padded per batch and truncated to ``max_length`` (default: the
    tokenizer's ``model_max_length`` when it is a real limit, e.g. 512 for
    DistilBERT). A classifier without ``pad_token_id`` (e.g. a Llama
    classifier) gets the tokenizer's, so batches can be padded.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pos, neg = label_index(classifier, positive), label_index(classifier, negative)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError("reward tokenizer has neither a pad nor an EOS token to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(classifier.config, "pad_token_id", None) is None:
        classifier.config.pad_token_id = tokenizer.pad_token_id
    if max_length is None and tokenizer.model_max_length < _NO_LIMIT:
        max_length = int(tokenizer.model_max_length)
    texts = [p + r for p, r in zip(prompts, responses)]
    out = np.zeros(len(texts))
    device = classifier.device
    # Pass only what forward takes (a BERT tokenizer's token_type_ids would break a Llama classifier).
    accepted = set(inspect.signature(classifier.forward).parameters)
    with torch.inference_mode():
        for lo in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[lo:lo + batch_size], padding=True, truncation=max_length is not None, max_length=max_length,
                return_tensors="pt",
            ).to(device)
            logits = classifier(**{k: v for k, v in batch.items() if k in accepted}).logits.double()
            out[lo:lo + batch_size] = (logits[:, pos] - logits[:, neg]).cpu().numpy()
    return out
