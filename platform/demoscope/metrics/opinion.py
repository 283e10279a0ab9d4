"""Scoring opinion predictions against human distributions, as SubPOP evaluates (§4.1-4.3).

Per row: the human distribution is ``output_dist`` without its refusal share,
renormalised, and cut to the ``len(ordinal)`` scored options; the model
distribution covers the same options; the score is the range-normalised
ordinal Wasserstein distance. Dataset WD is the unweighted mean over rows
(NaN rows, i.e. non-ordinal questions, skipped); per-group WD the same mean
within a group. Intervals resample questions by default (clustered
bootstrap, ``demoscope.metrics.bootstrap``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from demoscope.metrics.bootstrap import bootstrap_ci, grouped_bootstrap_ci, paired_bootstrap_ci
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


BOOTSTRAP_KINDS = ("question", "row")

# What each resampling unit means for a reader of a report.
BOOTSTRAP_NOTES = {
    "question": "Each resample draws as many questions as the test set has, with replacement, and keeps all rows "
                "(subpopulations) of each drawn question, because the rows of one question are correlated. "
                "Within one subpopulation there is one row per question, so there this equals resampling rows. "
                "Same seed, same intervals, whatever order the rows arrive in.",
    "row": "Rows are resampled as if independent, which ignores that the rows of one question are correlated: "
           "these intervals are too narrow for claims about new questions (use `bootstrap: question`). "
           "Same seed, same intervals, whatever order the rows arrive in.",
}


def summarize(predictions: pd.DataFrame, systems: list[str], n_boot: int = 1000, seed: int = 0,
              bootstrap: str = "question", confidence: float = 0.95) -> dict:
    """Mean WD with bootstrap intervals, overall, per subpopulation and as paired differences.

    ``predictions`` has ``qkey, attribute, group`` and a column ``wd_<system>``
    per system (NaN rows, non-ordinal questions, are skipped). ``bootstrap``
    is ``"question"`` (resample questions with all their rows: the clustered
    bootstrap, the default) or ``"row"`` (resample rows as if independent).
    Within one subpopulation there is one row per question, so there the two
    kinds are statistically the same. Intervals do not depend on row order.

    Returns a dict:

    - ``overall``: DataFrame[system, mean, low, high, n, questions]
    - ``per_group``: DataFrame[attribute, group, system, mean, low, high, n]
    - ``differences``: DataFrame[difference, first, other, mean, low, high,
      excludes_zero, gap_reduction, gap_low, gap_high, n, questions]: the first
      system minus each other one, over rows where both are defined, with
      paired intervals (:func:`paired_bootstrap_ci`)
    - ``gap_reduction``: {other: relative WD reduction of the first system}
      (SubPOP's "reduces the gap by up to 46%"), from the overall means
    - ``bootstrap``: {kind, resamples, seed, confidence, description}, the
      description reading e.g. "95% interval, questions resampled (clustered
      bootstrap), 1000 resamples, seed 0"
    """
    if bootstrap not in BOOTSTRAP_KINDS:
        raise ValueError(f"bootstrap must be one of {BOOTSTRAP_KINDS}, got {bootstrap!r}")
    clusters = predictions["qkey"].to_numpy() if bootstrap == "question" else None
    settings = {"n_boot": n_boot, "confidence": confidence, "seed": seed}
    overall = pd.DataFrame([
        {"system": s, **dict(zip(("mean", "low", "high"),
                                 bootstrap_ci(predictions[f"wd_{s}"], clusters=clusters, **settings))),
         "n": int(predictions[f"wd_{s}"].notna().sum()),
         "questions": int(predictions.loc[predictions[f"wd_{s}"].notna(), "qkey"].nunique())}
        for s in systems
    ])
    cluster_col = "qkey" if bootstrap == "question" else None
    per_group = pd.concat([
        grouped_bootstrap_ci(predictions, f"wd_{s}", ["attribute", "group"], cluster_col=cluster_col,
                             **settings).assign(system=s)
        for s in systems
    ], ignore_index=True)
    means = dict(zip(overall["system"], overall["mean"]))
    first = systems[0]
    gaps = {other: relative_gap_reduction(means[other], means[first]) for other in systems[1:] if means[other] > 0}
    return {"overall": overall, "per_group": per_group,
            "differences": _differences(predictions, systems, clusters, settings),
            "gap_reduction": gaps,
            "bootstrap": {"kind": bootstrap, "resamples": n_boot, "seed": seed, "confidence": confidence,
                          "description": _describe(bootstrap, n_boot, seed, confidence)}}


def _describe(kind: str, n_boot: int, seed: int, confidence: float) -> str:
    """The one-line statement of how the intervals were made, for reports."""
    unit = "questions resampled (clustered bootstrap)" if kind == "question" else "rows resampled (row bootstrap)"
    return f"{confidence:.0%} interval, {unit}, {n_boot} resamples, seed {seed}"


def _differences(predictions: pd.DataFrame, systems: list[str], clusters, settings: dict) -> pd.DataFrame:
    """Paired intervals of the first system minus each other one (see :func:`summarize`)."""
    first = systems[0]
    rows = []
    for other in systems[1:]:
        a, b = predictions[f"wd_{first}"].to_numpy(dtype=float), predictions[f"wd_{other}"].to_numpy(dtype=float)
        paired = paired_bootstrap_ci(a, b, clusters=clusters, **settings)
        both = ~(np.isnan(a) | np.isnan(b))
        rows.append({"difference": f"{first} - {other}", "first": first, "other": other,
                     "mean": paired["mean"], "low": paired["low"], "high": paired["high"],
                     "excludes_zero": bool(paired["low"] > 0 or paired["high"] < 0),
                     "gap_reduction": paired["gap_reduction"], "gap_low": paired["gap_low"],
                     "gap_high": paired["gap_high"],
                     "n": paired["n"], "questions": int(predictions.loc[both, "qkey"].nunique())})
    columns = ["difference", "first", "other", "mean", "low", "high", "excludes_zero", "gap_reduction", "gap_low",
               "gap_high", "n", "questions"]
    return pd.DataFrame(rows, columns=columns)
