"""A leaderboard of several systems scored on the same rows: every metric with intervals, paired comparisons.

Each system's mean WD, TV, JS and KL (with intervals that resample
questions) and its SimBench-style score, ranked by mean WD; and for each
system the paired difference in mean WD against the best system and against
the uniform baseline (both systems on the same resampled questions, so an
interval that excludes 0 separates them even when their own intervals
overlap).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from demoscope.metrics.bootstrap import bootstrap_ci, paired_bootstrap_ci
from demoscope.metrics.row_scores import DISTANCE_METRICS, simbench_score

METRICS = ("wd", *DISTANCE_METRICS)


def leaderboard(predictions: pd.DataFrame, systems: Sequence[str], baseline: str = "uniform", n_boot: int = 1000,
                seed: int = 0, by_question: bool = True) -> pd.DataFrame:
    """One row per system, best (lowest mean WD) first.

    ``predictions`` has ``qkey`` and ``<metric>_<system>`` columns for the
    metrics in :data:`METRICS` (those missing are left out). Columns:
    ``rank, system``, then ``<metric>, <metric>_low, <metric>_high`` per
    metric, ``simbench`` (with ``tv_<baseline>``), and ``vs_best`` /
    ``vs_<baseline>`` with ``_low``/``_high``: the paired mean WD difference
    (system minus the other; negative is closer to the humans).
    """
    clusters = predictions["qkey"].to_numpy() if by_question else None
    settings = {"n_boot": n_boot, "seed": seed, "clusters": clusters}
    rows = []
    for system in systems:
        row: dict = {"system": system}
        for metric in METRICS:
            column = f"{metric}_{system}"
            if column in predictions:
                row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = bootstrap_ci(predictions[column], **settings)
        if f"tv_{system}" in predictions and f"tv_{baseline}" in predictions:
            row["simbench"] = simbench_score(predictions[f"tv_{system}"], predictions[f"tv_{baseline}"])
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("wd", kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    best = table["system"].iloc[0]
    for name, other in (("vs_best", best), (f"vs_{baseline}", baseline)):
        if f"wd_{other}" not in predictions:
            continue
        reference = predictions[f"wd_{other}"].to_numpy(float)
        paired = [paired_bootstrap_ci(predictions[f"wd_{s}"].to_numpy(float), reference, **settings)
                  for s in table["system"]]
        table[name] = [p["mean"] for p in paired]
        table[f"{name}_low"] = [p["low"] for p in paired]
        table[f"{name}_high"] = [p["high"] for p in paired]
    return table
