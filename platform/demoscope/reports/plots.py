"""Plots people would rather look at than read (matplotlib, headless, written atomically)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from demoscope.io import atomic_write


def plot_group_distributions(distributions: pd.DataFrame, qkeys: list[str], groups: list[str], path: str | Path) -> Path:
    """One panel per question: a stacked bar of answer shares for each group.

    ``distributions`` has our aggregate columns (``qkey, group, question,
    options, responses``); the refusal option is not drawn (shares are over
    the substantive options).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(qkeys), 1, figsize=(9, 2.1 * len(qkeys) + 0.6), squeeze=False)
    for ax, qkey in zip(axes[:, 0], qkeys):
        rows = distributions[(distributions.qkey == qkey) & distributions.group.isin(groups)]
        rows = rows.set_index("group").reindex([g for g in groups if g in set(rows.group)])
        options = list(rows.options.iloc[0])[:-1]
        cmap = plt.get_cmap("RdBu", max(len(options), 3))
        left = [0.0] * len(rows)
        for k, option in enumerate(options):
            shares = [r[k] for r in rows.responses]
            ax.barh(rows.index, shares, left=left, color=cmap(k), label=textwrap.shorten(option, 28))
            left = [a + b for a, b in zip(left, shares)]
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_title(textwrap.shorten(f"{qkey}: {rows.question.iloc[0]}", 100), fontsize=9, loc="left")
        ax.legend(fontsize=7, ncol=min(len(options), 5), loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
        ax.tick_params(labelsize=8)
    fig.suptitle("Answer shares by group (weighted; refusals excluded)", fontsize=10)
    fig.tight_layout()
    out = atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return out
