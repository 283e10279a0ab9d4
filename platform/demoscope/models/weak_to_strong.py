"""Weak-to-strong opinion steering: a small tuned/untuned pair reweights a large model's option distribution.

Emulated fine-tuning (Mitchell et al., 2023, "An Emulator for Fine-Tuning Large
Language Models using Small Language Models", arXiv:2310.12962) applied to one
multiple-choice step instead of a token sequence:

    p(k)  ∝  p_large(k) * (p_tuned(k) / p_untuned(k)) ** beta

so what fine-tuning taught the small model (its tuned/untuned log-ratio) is
added to the large model's answer without tuning the large one. ``beta=0``
gives the large model back; with an uninformative large model (uniform),
``beta=1`` gives the small pair's ratio.

:func:`weak_to_strong_scorers` builds the three scorers, :func:`steer`
combines their answers; ``demoscope evaluate --guide-model`` uses both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from demoscope.models.scoring import OptionScorer, option_scorers

# Scored letters can get probability 0 (a vLLM top-k miss): floor them so the ratio stays finite.
_FLOOR = 1e-12


def reweight(p_large: Sequence[float], p_tuned: Sequence[float], p_untuned: Sequence[float], beta: float) -> np.ndarray:
    """One question's steered distribution: ``softmax(log p_large + beta * (log p_tuned - log p_untuned))``."""
    large, tuned, untuned = (np.maximum(np.asarray(p, dtype=float), _FLOOR) for p in (p_large, p_tuned, p_untuned))
    if not large.shape == tuned.shape == untuned.shape:
        raise ValueError(f"distributions differ in length: {large.shape}, {tuned.shape}, {untuned.shape}")
    logits = np.log(large) + beta * (np.log(tuned) - np.log(untuned))
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def weak_to_strong_scorers(large: str, small: str, small_adapter: str, backend: str, batch_size: int = 16,
                           letter_logprobs: str = "auto", top_k: int = 128,
                           letter_rule: str = "sum") -> dict[str, OptionScorer]:
    """The three option scorers steering needs: ``{"large", "small_tuned", "small_untuned"}``.

    ``large`` and ``small`` are model paths (already resolved). The large
    model runs on ``backend`` (vLLM on GPU); the small pair always runs in
    Transformers (small and cheap): one PEFT model with ``small_adapter``
    switched on and off. Each scorer tokenises for itself, so the small
    models may use another tokenizer than the large one. Score each and
    combine their answers with :func:`steer`.
    """
    (large_scorer,) = option_scorers(large, None, backend, batch_size, False, letter_logprobs, top_k,
                                     letter_rule).values()
    pair = option_scorers(small, small_adapter, "transformers", batch_size, compare_base=True, letter_rule=letter_rule)
    return {"large": large_scorer, "small_tuned": pair["tuned"], "small_untuned": pair["base"]}


def steer(large: Sequence[Sequence[float]], tuned: Sequence[Sequence[float]], untuned: Sequence[Sequence[float]],
          beta: float) -> list[np.ndarray]:
    """Per question, :func:`reweight` of the three models' distributions (lists of equal length)."""
    if not len(large) == len(tuned) == len(untuned):
        raise ValueError(f"got {len(large)} large, {len(tuned)} tuned and {len(untuned)} untuned distributions")
    return [reweight(a, b, c, beta) for a, b, c in zip(large, tuned, untuned)]
