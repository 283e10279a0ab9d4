"""Plots people would rather look at than read (matplotlib, headless, written atomically)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from demoscope.io import atomic_write


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically (no half-written image if interrupted) and release it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)


def plot_bars(labels: list[str], values, path: str | Path, ylabel: str, errors=None, colors=None) -> Path:
    """One bar per label (optional ``[low, high]`` error offsets and per-bar colours), e.g. a score per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.6 * len(labels) + 2.5, 3.4))
    ax.bar(labels, values, yerr=errors, color=colors or "tab:blue", capsize=3)
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.tick_params(axis="x", rotation=45 if len(labels) > 5 else 0)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_group_distributions(distributions: pd.DataFrame, qkeys: list[str], groups: list[str],
                             path: str | Path) -> Path:
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
    return save_figure(fig, path)


def plot_group_wasserstein(per_group: pd.DataFrame, systems: list[str], path: str | Path) -> Path:
    """Mean Wasserstein distance per subpopulation, one bar per system, with bootstrap 95% intervals.

    ``per_group`` has columns ``attribute, group, system, mean, low, high``
    (``demoscope.metrics.opinion.summarize``). Lower is closer to the humans.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = per_group[["attribute", "group"]].drop_duplicates().reset_index(drop=True)
    height = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(groups) * len(systems) + 1.4))
    y = np.arange(len(groups))
    colors = plt.get_cmap("tab10")
    for i, system in enumerate(systems):
        rows = groups.merge(per_group[per_group.system == system], on=["attribute", "group"], how="left")
        err = np.vstack([rows["mean"] - rows["low"], rows["high"] - rows["mean"]])
        ax.barh(y + i * height, rows["mean"], height=height, xerr=err, color=colors(i), label=system,
                error_kw={"elinewidth": 0.8, "capsize": 2})
    ax.set_yticks(y + height * (len(systems) - 1) / 2, [f"{a}: {g}" for a, g in zip(groups.attribute, groups.group)],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("mean Wasserstein distance to the humans (lower is better; 95% bootstrap CI)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_wd_histogram(predictions: pd.DataFrame, systems: list[str], path: str | Path) -> Path:
    """Distribution of per-row Wasserstein distances for each system (overlaid histograms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for system in systems:
        values = predictions[f"wd_{system}"].dropna()
        ax.hist(values, bins=40, range=(0, max(0.5, float(values.max()) if len(values) else 0.5)), alpha=0.5,
                label=f"{system} (mean {values.mean():.3f})")
    ax.set_xlabel("Wasserstein distance per (question, subpopulation)")
    ax.set_ylabel("rows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
