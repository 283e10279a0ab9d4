"""Summaries of aggregated distributions: per-group tables and comparisons with a known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from demoscope.metrics import total_variation


def group_summary(distributions: pd.DataFrame, truth: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per subpopulation: questions, median n, mean Kish n_eff, mean refusal rate.

    With ``truth`` (columns ``qkey, attribute, group, responses``) it adds the
    mean total-variation distance between the estimate and the truth.
    """
    frame = distributions
    if truth is not None:
        merged = frame.merge(truth[["qkey", "attribute", "group", "responses"]], on=["qkey", "attribute", "group"],
                             how="left", suffixes=("", "_true"))
        has = merged["responses_true"].notna()
        merged["tv_to_truth"] = np.nan
        merged.loc[has, "tv_to_truth"] = [
            total_variation(a, b) for a, b in zip(merged.loc[has, "responses"], merged.loc[has, "responses_true"])
        ]
        frame = merged
    stats = {"questions": ("qkey", "nunique"), "median_n": ("n", "median"), "mean_n_eff": ("n_eff", "mean"),
             "mean_refusal": ("refusal_rate", "mean")}
    if truth is not None:
        stats["mean_tv_to_truth"] = ("tv_to_truth", "mean")
    table = frame.groupby(["attribute", "group"], sort=False).agg(**stats).reset_index()
    table["median_n"] = table["median_n"].round().astype(int)
    return table


def most_divided_questions(distributions: pd.DataFrame, left: str, right: str, k: int = 4) -> list[str]:
    """The ``k`` questions whose answers differ most between groups ``left`` and ``right`` (total variation)."""
    a = distributions[distributions.group == left].set_index("qkey").responses
    b = distributions[distributions.group == right].set_index("qkey").responses
    common = a.index.intersection(b.index)
    gaps = pd.Series([total_variation(a[q], b[q]) for q in common], index=common)
    return list(gaps.sort_values(ascending=False).index[:k])
