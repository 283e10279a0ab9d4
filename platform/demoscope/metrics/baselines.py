"""Baselines that need no model: what a prediction must beat to say anything about a subpopulation.

- ``uniform``: equal mass on every scored option with ordinal >= 0 (SubPOP §4.3);
- ``other_groups``: for each (question, group) row, the unweighted mean of the
  human distributions of every *other* subpopulation row of the same question
  (all attributes: a South row is predicted from Northeast, Democrat, 65+ ...).
  It measures how much a group differs from the rest: a steered model that
  does not beat it has learnt the question, not the group.

Both are computed from a prepared split's ``output_dist`` and ``ordinal``
(:func:`demoscope.metrics.opinion.human_distribution`), with the same
Wasserstein distance as the models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from demoscope.metrics.opinion import human_distribution
from demoscope.metrics.wasserstein import ordinal_wasserstein, uniform_baseline

KEY = ["qkey", "attribute", "group"]
# One line per baseline, for reports and help texts to say exactly what was computed.
BASELINE_NOTES = {
    "other_groups": "`other_groups`: each (question, group) row predicted by the unweighted mean of the human "
                    "distributions of every other subpopulation on the same question (no model; NaN where the "
                    "question has no other group)",
    "uniform": "`uniform`: equal mass on every scored option with ordinal >= 0 (no model)",
}


def other_groups_distributions(frame: pd.DataFrame) -> list[np.ndarray | None]:
    """Per row of ``frame`` (``qkey, attribute, group, output_dist, ordinal``), the other groups' mean distribution.

    Each subpopulation counts once even when it has several rows (``ALL``
    steering writes three prompts per group). Rows of a question are compared
    only with rows scoring the same number of options. Returns one array of
    ``len(ordinal)`` shares per row, or None where the question has no other
    group.
    """
    unique = frame.drop_duplicates(KEY)
    humans = [human_distribution(list(d), list(o)) for d, o in zip(unique["output_dist"], unique["ordinal"])]
    keys = list(unique[KEY].itertuples(index=False, name=None))
    sizes = [len(h) for h in humans]
    means: dict[tuple, np.ndarray | None] = {}
    positions = pd.Series(range(len(unique)))
    for _, members in positions.groupby([unique["qkey"].to_numpy(), sizes], sort=False):
        stacked = np.stack([humans[i] for i in members])
        # Sum once, subtract each row: the mean of the others without a loop over pairs.
        others = (stacked.sum(axis=0) - stacked) / (len(members) - 1) if len(members) > 1 else [None]
        for i, mean in zip(members, others):
            means[keys[i]] = mean
    return [means[key] for key in frame[KEY].itertuples(index=False, name=None)]


def baseline_predictions(frame: pd.DataFrame) -> pd.DataFrame:
    """Predictions of both baselines for a prepared split, in the evaluate job's columns.

    Returns ``qkey, attribute, group, output_dist, ordinal`` (``n, n_eff``
    where the frame has them) and, for
    ``other_groups`` and ``uniform``, ``dist_<name>`` (list of shares, None
    where undefined) and ``wd_<name>`` (NaN where undefined or non-ordinal).
    """
    out = frame[KEY + ["output_dist", "ordinal"] + [c for c in ("n", "n_eff") if c in frame]].copy()
    out["output_dist"] = [list(map(float, d)) for d in out["output_dist"]]
    out["ordinal"] = [list(map(float, o)) for o in out["ordinal"]]
    humans = [human_distribution(d, o) for d, o in zip(out["output_dist"], out["ordinal"])]
    others = other_groups_distributions(out)
    uniform = [uniform_baseline(o) for o in out["ordinal"]]
    for name, dists in (("other_groups", others), ("uniform", uniform)):
        out[f"dist_{name}"] = [None if d is None else d.tolist() for d in dists]
        out[f"wd_{name}"] = [np.nan if d is None else ordinal_wasserstein(h, d, o)
                             for h, d, o in zip(humans, dists, out["ordinal"])]
    return out
