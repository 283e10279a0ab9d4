"""Ordinal Wasserstein distance between opinion distributions (SubPOP §4.2).

The evaluation metric of SubPOP and OpinionQA: the 1-D earth mover's distance
on the options' ordinal positions, divided by the range of those positions so
that it lies in [0, 1]. Options with a negative ordinal ("Don't know"-type
answers in GSS) are dropped before the distance is taken.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ordinal_wasserstein(human: Sequence[float], model: Sequence[float], ordinal: Sequence[float]) -> float:
    """Range-normalised 1-D Wasserstein distance between two option distributions.

    ``human``, ``model`` and ``ordinal`` hold one entry per option, in the same
    order (callers drop the refusal slot and truncate to ``len(ordinal)``
    first, as SubPOP §4.1 does). Follows SubPOP §4.2 exactly: NaN when all
    ordinals are equal (a non-ordinal question, skipped in means); otherwise
    sort jointly by ordinal, drop options with ordinal < 0, renormalise both
    sides (a side with no mass left becomes uniform) and return
    ``sum_i |H_i - M_i| * (v_{i+1} - v_i) / (v_max - v_min)`` over the
    cumulative sums H, M. Equals ``scipy.stats.wasserstein_distance(v, v, h,
    m) / (v_max - v_min)``. Returns a float in [0, 1], or NaN.
    """
    h = np.asarray(human, dtype=float).ravel()
    m = np.asarray(model, dtype=float).ravel()
    v = np.asarray(ordinal, dtype=float).ravel()
    if not (h.size == m.size == v.size):
        raise ValueError(
            f"human, model and ordinal must have one entry per option; got lengths "
            f"{h.size}, {m.size}, {v.size} (drop the refusal slot and truncate to len(ordinal) first)"
        )
    if v.size == 0 or v.max() == v.min():
        return float("nan")

    # Stable sort so that options sharing an ordinal keep their order (it does
    # not change the value: their gap is 0) and results are reproducible.
    order = np.argsort(v, kind="stable")
    v, h, m = v[order], h[order], m[order]
    keep = v >= 0
    v, h, m = v[keep], _renormalise(h[keep]), _renormalise(m[keep])
    if v.size == 0 or v.max() == v.min():
        # Only one ordinal position survives the drop: the distance is 0/0.
        return float("nan")

    gaps = np.diff(v)
    cum_h, cum_m = np.cumsum(h)[:-1], np.cumsum(m)[:-1]
    return float(np.sum(np.abs(cum_h - cum_m) * gaps) / (v[-1] - v[0]))


def _renormalise(p: np.ndarray) -> np.ndarray:
    total = p.sum()
    if total == 0:
        # SubPOP's rule: no mass on the kept options means "no information",
        # which the reference treats as uniform rather than failing.
        return np.full(p.size, 1.0 / p.size) if p.size else p
    return p / total


def uniform_baseline(ordinal: Sequence[float]) -> np.ndarray:
    """Uniform distribution over the ordinal options (SubPOP §4.3 baselines).

    Takes a question's ordinal list and returns an array of the same length
    that puts equal mass on every option with ordinal >= 0 and zero on
    options with a negative ordinal (those are dropped by
    :func:`ordinal_wasserstein` anyway, so this is the uniform baseline the
    reference describes). Raises ValueError if no option has ordinal >= 0.
    """
    v = np.asarray(ordinal, dtype=float).ravel()
    keep = v >= 0
    if not keep.any():
        raise ValueError(
            f"no option has a non-negative ordinal in {v.tolist()}; a uniform baseline is undefined"
        )
    return np.where(keep, 1.0 / keep.sum(), 0.0)


def relative_gap_reduction(baseline: float, model: float) -> float:
    """Share of a baseline's distance to humans that a model closes.

    ``(baseline - model) / baseline`` for two distances to the human
    distribution (e.g. mean ordinal WD of the base model and of the
    fine-tuned one). This is the number behind SubPOP's "reduces the gap by
    up to 46%": 1 means the model matches humans, 0 no improvement, negative
    a regression. Raises ValueError when the baseline is 0 (no gap to close).
    """
    if baseline == 0:
        raise ValueError("baseline distance is 0: there is no gap to reduce")
    return float((baseline - model) / baseline)
