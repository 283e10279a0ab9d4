"""Distances between discrete distributions over the same options.

Besides SubPOP's ordinal Wasserstein (:mod:`demoscope.metrics.wasserstein`),
opinion benchmarks score with total variation (SimBench, Hu et al. 2025,
github.com/tsor13/SimBench_release ``calculate_simbench_score.py``; Meister et
al. 2025, "Benchmarking Distributional Alignment of Large Language Models"),
Jensen-Shannon (GlobalOpinionQA, Durmus et al. 2023: similarity = 1 - the
Jensen-Shannon distance) and KL. Every function takes two distributions over
the same options, in the same order; each side is normalised to sum 1 first
(as SimBench does), so shares that do not quite sum to 1 are compared as
distributions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

# Added to every model probability before KL, then renormalised: a model that gives an option 0 while humans
# chose it would otherwise score infinity (the value a reader cannot average).
KL_SMOOTHING = 1e-6


def _pair(p: Sequence[float], q: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    p, q = np.asarray(p, dtype=float).ravel(), np.asarray(q, dtype=float).ravel()
    if p.shape != q.shape:
        raise ValueError(f"distributions differ in length: {p.shape[0]} vs {q.shape[0]}")
    return _normalise(p), _normalise(q)


def _normalise(p: np.ndarray) -> np.ndarray:
    total = p.sum()
    return p / total if total > 0 else p


def total_variation(p: Sequence[float], q: Sequence[float]) -> float:
    """Total variation distance ``0.5 * sum |p - q|`` (0 = identical, 1 = disjoint)."""
    p, q = _pair(p, q)
    return float(0.5 * np.abs(p - q).sum())


def jensen_shannon(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon *distance* in bits: the square root of the JS divergence with log base 2, in [0, 1].

    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``; GlobalOpinionQA's
    similarity is 1 minus this (with natural logs: multiply the divergence by
    ln 2 to convert).
    """
    p, q = _pair(p, q)
    return float(jensenshannon(p, q, base=2))


def kl_divergence(p: Sequence[float], q: Sequence[float], smoothing: float = KL_SMOOTHING) -> float:
    """``KL(p || q)`` in nats, humans ``p`` against model ``q``, with ``q`` smoothed.

    ``q`` becomes ``(q + smoothing) / (1 + K * smoothing)`` over its ``K``
    options, so the value is finite when the model gives an option the humans
    chose probability 0; ``p`` is not smoothed (an option no human chose adds
    nothing).
    """
    p, q = _pair(p, q)
    q = (q + smoothing) / (1.0 + q.size * smoothing)
    return float(entropy(p, q))


def uniform(n_options: int) -> np.ndarray:
    """The uniform distribution over ``n_options`` options (the baseline SimBench normalises by)."""
    return np.full(n_options, 1.0 / n_options)
