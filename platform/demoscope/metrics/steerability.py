"""Steerability: does steering a model towards a group bring its answers closer to that group?

For each test row (a question asked of a model steered to answer as one
group) we compare two distances to that group's human distribution: the
steered answer's WD and the unsteered answer's WD (the same question
without the steering prefix, which every group of the question shares).
A steerable model has the steered one smaller (the question OpinionQA's
steerability analysis asks: Santurkar et al., 2023, "Whose Opinions Do
Language Models Reflect?", ICML). Written as a plain table: the share of
rows where steering helped, and the mean WD gain (unsteered minus steered;
positive means closer).
"""

from __future__ import annotations

import pandas as pd


def steerability(predictions: pd.DataFrame, system: str) -> pd.DataFrame:
    """Per (attribute, group): rows, share of rows where steering moved ``system`` closer, mean WD gain.

    Reads ``wd_<system>`` and ``wd_<system>_unsteered``; rows with a NaN
    distance (non-ordinal questions) are skipped. A last row, group
    ``(all)``, pools every row.
    """
    steered, unsteered = predictions[f"wd_{system}"], predictions[f"wd_{system}_unsteered"]
    rows = predictions.assign(gain=unsteered - steered, closer=(steered < unsteered).astype(float))
    rows = rows[steered.notna() & unsteered.notna()]
    per_group = rows.groupby(["attribute", "group"], sort=True).agg(
        rows=("gain", "size"), closer_share=("closer", "mean"), mean_gain=("gain", "mean")).reset_index()
    pooled = pd.DataFrame([{"attribute": "(all)", "group": "(all)", "rows": len(rows),
                            "closer_share": rows["closer"].mean(), "mean_gain": rows["gain"].mean()}])
    return pd.concat([per_group, pooled], ignore_index=True)
