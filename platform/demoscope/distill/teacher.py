"""Teacher soft labels: a causal LM's few-shot Negative/Positive probabilities (``reference`` D.1).

The teacher reads a 3-shot prompt ending in ``"Sentiment: "`` and its soft
label is the softmax of the next-token logits restricted to the first token
of each label word. That restricted softmax equals the full-vocabulary
softmax renormalised over the two tokens, so the same code serves the IMDB
labelling (words without a leading space) and the EEC teacher scoring
(``" Negative"``/``" Positive"``, with one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from demoscope.errors import ConfigError, ModelError
from demoscope.models.prefix_sharing import PrefixSharingLM

LABEL_WORDS = ("Negative", "Positive")
N_SHOTS = 3


def _check_label_words(label_words: Sequence[str]) -> None:
    if len(label_words) != 2:
        raise ConfigError(f"label_words must be two words (negative, positive), got {list(label_words)}")


def few_shot_prompt(text: str, examples: Sequence[tuple[str, int]], label_words: Sequence[str] = LABEL_WORDS) -> str:
    """The D.1 prompt: instruction, one ``Text:/Sentiment:`` block per example, then ``text``.

    ``examples`` are ``(text, label)`` pairs with label 0 (``label_words[0]``)
    or 1. The prompt ends in ``"Sentiment: "`` with a trailing space, as the
    reference's does; the label token is read at the next position.
    """
    _check_label_words(label_words)
    parts = [f"Classify the sentiment of the following texts as either {label_words[0]}, or {label_words[1]}.\n\n"]
    for example_text, label in examples:
        if label not in (0, 1):
            raise ConfigError(f"few-shot example labels must be 0 or 1, got {label!r}")
        parts.append(f"Text: {example_text}\nSentiment: {label_words[int(label)]}\n\n")
    parts.append(f"Text: {text}\nSentiment: ")
    return "".join(parts)


def pick_examples(
    texts: Sequence[str],
    labels: Sequence[int],
    split: Literal["train", "test"] = "train",
    n_rows: int | None = None,
    k: int = N_SHOTS,
    seed: int = 0,
) -> list[list[tuple[str, int]]]:
    """Few-shot examples per row, drawn from the training rows ``texts``/``labels`` (D.1).

    ``split="train"``: one list per training row, ``k`` distinct *other*
    training rows drawn at random (a row never sees itself). ``split="test"``:
    ``n_rows`` copies of one fixed ``k``-example sample of the training rows.
    Deterministic in ``seed``.
    """
    if len(texts) != len(labels):
        raise ConfigError(f"got {len(texts)} texts but {len(labels)} labels")
    n = len(texts)
    rng = np.random.default_rng(seed)
    rows = list(zip(texts, (int(y) for y in labels)))
    if split == "train":
        if n - 1 < k:
            raise ConfigError(f"need more than {k} training rows to pick {k} other examples per row, got {n}")
        picked = []
        for i in range(n):
            # Draw from the n - 1 other rows, then shift indices at or past i by one to skip row i.
            others = rng.choice(n - 1, size=k, replace=False)
            picked.append([rows[j + (j >= i)] for j in others])
        return picked
    if split == "test":
        if n_rows is None:
            raise ConfigError("split='test' needs n_rows, the number of test rows")
        if n < k:
            raise ConfigError(f"need at least {k} training rows for the fixed test examples, got {n}")
        fixed = [rows[j] for j in rng.choice(n, size=k, replace=False)]
        return [list(fixed) for _ in range(n_rows)]
    raise ConfigError(f"split must be 'train' or 'test', got {split!r}")


def label_token_ids(tokenizer: Any, label_words: Sequence[str] = LABEL_WORDS, leading_space: bool = False) -> list[int]:
    """First token id of each label word, encoded without special tokens (D.1).

    ``leading_space=False`` encodes ``"Negative"`` (the IMDB labelling),
    ``True`` encodes ``" Negative"`` (the EEC teacher scoring). Raises
    :class:`ModelError` when a word encodes to nothing or two words share a
    first token (their probabilities could not be told apart).
    """
    _check_label_words(label_words)
    ids = []
    for word in label_words:
        encoded = tokenizer.encode((" " + word) if leading_space else word, add_special_tokens=False)
        if not encoded:
            raise ModelError(f"label word {word!r} encodes to no tokens")
        ids.append(int(encoded[0]))
    if ids[0] == ids[1]:
        shown = tokenizer.convert_ids_to_tokens(ids[0]) if hasattr(tokenizer, "convert_ids_to_tokens") else ids[0]
        raise ModelError(
            f"label words {list(label_words)} (leading_space={leading_space}) share their first token "
            f"{shown!r}; pick label words whose first tokens differ"
        )
    return ids


class TeacherLabeler:
    """Turn prompts into ``[n, 2]`` label probabilities with a causal LM (D.1).

    Prompts are encoded with the tokenizer's special tokens (a Llama
    tokenizer adds BOS, as the reference's batch tokenisation did) and run
    through :class:`~demoscope.models.prefix_sharing.PrefixSharingLM`: few-shot
    prompts share their instruction and examples, which run once
    (the EEC's 8,640 sentences behind one fixed 3-shot prefix cost little
    more than the sentences). Explicit position ids keep a padded prompt's
    scores what they are alone; the output is in the input order. The
    softmax over the two label tokens' log-probs equals the one over their
    logits.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        label_words: Sequence[str] = LABEL_WORDS,
        leading_space: bool = False,
        batch_size: int = 16,
    ):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.label_words = tuple(label_words)
        self.label_ids = torch.tensor(label_token_ids(tokenizer, label_words, leading_space))
        self.lm = PrefixSharingLM(model, tokenizer, batch_size)

    def probabilities(self, prompts: Sequence[str]) -> np.ndarray:
        """``[len(prompts), 2]`` float64 array: softmax over the two label-token logits at the next position."""
        out = np.zeros((len(prompts), 2))
        if not prompts:
            return out
        ids = self.tokenizer(list(prompts))["input_ids"]
        was_training = self.model.training
        self.model.eval()
        try:
            for batch, logprobs in self.lm.batches(ids):
                gathered = logprobs.index_select(-1, self.label_ids.to(logprobs.device))
                out[batch] = torch.softmax(gathered.double(), dim=-1).cpu().numpy()
        finally:
            self.model.train(was_training)
        return out

    @classmethod
    def load(cls, path: str, device: str = "auto", dtype: str = "auto", **kwargs: Any) -> TeacherLabeler:
        """Load a teacher from a model folder or Hub id with :func:`demoscope.models.load_causal_lm`."""
        from demoscope.models import load_causal_lm

        model, tokenizer = load_causal_lm(path, dtype=dtype, device=device)
        return cls(model, tokenizer, **kwargs)


def soft_label_frame(texts: Sequence[str], labels: Sequence[int], probs: np.ndarray) -> pd.DataFrame:
    """The seed's soft-label table: columns ``text, label, label_0, label_1`` (``label_k`` = teacher p(k))."""
    probs = np.asarray(probs, dtype=float)
    if probs.shape != (len(texts), 2):
        raise ConfigError(f"probs must have shape ({len(texts)}, 2), got {probs.shape}")
    if len(labels) != len(texts):
        raise ConfigError(f"got {len(texts)} texts but {len(labels)} labels")
    return pd.DataFrame({
        "text": list(texts), "label": np.asarray(labels, dtype=int), "label_0": probs[:, 0], "label_1": probs[:, 1],
    })
