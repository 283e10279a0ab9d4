"""Scoring opinion predictions against human distributions, as SubPOP evaluates (§4.1-4.3).

Per row: the human distribution is ``output_dist`` without its refusal share,
renormalised, and cut to the ``len(ordinal)`` scored options; the model
distribution covers the same options; the score is the range-normalised
ordinal Wasserstein distance. Dataset WD is the unweighted mean over rows
(NaN rows, i.e. non-ordinal questions, skipped); per-group WD the same mean
within a group.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from demoscope.metrics.bootstrap import bootstrap_ci, grouped_bootstrap_ci
from demoscope.metrics.wasserstein import ordinal_wasserstein, relative_gap_reduction, uniform_baseline


def human_distribution(output_dist, ordinal) -> np.ndarray:
    """``output_dist`` (responses + refusal) -> the human shares over the ``len(ordinal)`` scored options."""
    shares = np.asarray(output_dist[:-1], dtype=float)
    shares = shares / shares.sum() if shares.sum() > 0 else shares
    return shares[: len(ordinal)]


def row_distances(frame: pd.DataFrame, model_column: str) -> np.ndarray:
    """WD between each row's human distribution and its ``model_column`` distribution (NaN if non-ordinal)."""
    return np.array([
        ordinal_wasserstein(human_distribution(d, o), np.asarray(m, dtype=float)[: len(o)], o)
        for d, o, m in zip(frame["output_dist"], frame["ordinal"], frame[model_column])
    ])


def uniform_distances(frame: pd.DataFrame) -> np.ndarray:
    """WD of the uniform-over-ordinal-options baseline for each row."""
    return np.array([
        ordinal_wasserstein(human_distribution(d, o), uniform_baseline(o), o)
        for d, o in zip(frame["output_dist"], frame["ordinal"])
    ])


def summarize(predictions: pd.DataFrame, systems: list[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean WD with bootstrap 95% intervals, overall and per subpopulation, for columns ``wd_<system>``.

    Returns ``{"overall": DataFrame[system, mean, low, high, n], "per_group":
    DataFrame[attribute, group, system, mean, low, high, n], "gap_reduction": {...}}``
    where gap reduction is the relative WD reduction of the first system
    against each other one (SubPOP's "reduces the gap by up to 46%").
    """
    overall = pd.DataFrame([
        {"system": s, **dict(zip(("mean", "low", "high"), bootstrap_ci(predictions[f"wd_{s}"], n_boot, seed=seed))),
         "n": int(predictions[f"wd_{s}"].notna().sum())}
        for s in systems
    ])
    per_group = pd.concat([
        grouped_bootstrap_ci(predictions, f"wd_{s}", ["attribute", "group"], n_boot=n_boot, seed=seed).assign(system=s)
        for s in systems
    ], ignore_index=True)
    means = dict(zip(overall["system"], overall["mean"]))
    first = systems[0]
    gaps = {other: relative_gap_reduction(means[other], means[first]) for other in systems[1:] if means[other] > 0}
    return {"overall": overall, "per_group": per_group, "gap_reduction": gaps}
