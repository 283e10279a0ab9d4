"""Opinion alignment: which survey groups a model's answers are closest to, and how tuning moved it."""

from __future__ import annotations

import pandas as pd

from demoscope.metrics.opinion import row_distances
from demoscope.surveys.prompts import unsteered_prompt


def group_alignment(test: pd.DataFrame, scorers: dict[str, object]) -> pd.DataFrame:
    """Mean Wasserstein distance between each system's own answers and each subpopulation.

    ``test`` is a prepared split (``qkey, input_prompt, output_dist, ordinal,
    attribute, group``). Each system answers every question once, *without*
    steering (the MCQ part of ``input_prompt``): that is the model's own
    opinion, compared with every group's human distribution for the question.
    Returns ``attribute, group, system, mean_wd, rank`` with rank 1 = the
    group the system is closest to.
    """
    questions = test.drop_duplicates("qkey")
    prompts = [unsteered_prompt(p) for p in questions["input_prompt"]]
    counts = [len(o) for o in questions["ordinal"]]
    rows = []
    for system, scorer in scorers.items():
        answers = dict(zip(questions["qkey"], (d.tolist() for d in scorer.score(prompts, counts))))
        frame = test[["attribute", "group", "output_dist", "ordinal"]].copy()
        frame["dist"] = test["qkey"].map(answers)
        frame["wd"] = row_distances(frame, "dist")
        means = frame.groupby(["attribute", "group"], sort=False)["wd"].mean().reset_index(name="mean_wd")
        means["system"] = system
        rows.append(means)
    table = pd.concat(rows, ignore_index=True)
    table["rank"] = table.groupby("system")["mean_wd"].rank(method="min").astype(int)
    return table


def movement(table: pd.DataFrame, base: str, tuned: str) -> pd.DataFrame:
    """Per group: WD of ``base`` and ``tuned`` and the change (negative = tuning moved the model closer)."""
    wide = table.pivot_table(index=["attribute", "group"], columns="system", values="mean_wd", sort=False)
    out = wide[[base, tuned]].reset_index()
    out["change"] = out[tuned] - out[base]
    return out.sort_values("change").reset_index(drop=True)
