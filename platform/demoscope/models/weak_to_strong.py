"""Weak-to-strong opinion steering: a small tuned/untuned pair reweights a large model's option distribution.

Emulated fine-tuning (``reference/politune-w2s-gradex-distillation.md`` part B)
applied to one multiple-choice step instead of a token sequence:

    p(k)  ∝  p_large(k) * (p_tuned(k) / p_untuned(k)) ** beta

so what fine-tuning taught the small model (its tuned/untuned log-ratio) is
added to the large model's answer without tuning the large one. ``beta=0``
gives the large model back; with an uninformative large model (uniform),
``beta=1`` gives the small pair's ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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


class WeakToStrongScorer:
    """An option scorer (same protocol) that steers ``large`` with the ``tuned``/``untuned`` pair.

    All three are option scorers over the same prompts; each tokenises for
    itself, so the small models may use a different tokenizer from the large
    one. The reported letter mass is the large model's.
    """

    def __init__(self, large, tuned, untuned, beta: float = 1.0):
        self.large, self.tuned, self.untuned, self.beta = large, tuned, untuned, beta
        self.zero_mass_count = 0

    def score(self, prompts: Sequence[str], n_options: Sequence[int]) -> list[np.ndarray]:
        """Per prompt, the steered distribution over its first ``n_options`` letters."""
        return self.score_with_mass(prompts, n_options)[0]

    def score_with_mass(self, prompts: Sequence[str], n_options: Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
        """``score`` plus the large model's pre-normalisation letter mass."""
        large, masses = self.large.score_with_mass(prompts, n_options)
        tuned, untuned = self.tuned.score(prompts, n_options), self.untuned.score(prompts, n_options)
        self.zero_mass_count += int((masses == 0).sum())
        return [reweight(a, b, c, self.beta) for a, b, c in zip(large, tuned, untuned)], masses
