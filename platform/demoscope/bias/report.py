"""Bias report: EEC statistics for several systems as CSV, Markdown and two plots.

Input is a mapping of system name -> one score per EEC row (e.g. p(Positive)
of the teacher, the baseline student and the distilled student), aligned
with the rows of :func:`demoscope.bias.generate_eec`. Every file is written
atomically, so a crash never leaves a half-written table or image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from demoscope.bias.eec import generate_eec
from demoscope.bias.statistics import GROUPS, bias_statistics, paired_differences
from demoscope.errors import ConfigError
from demoscope.io import atomic_write, atomic_write_text
from demoscope.reports import markdown_table, save_figure

_SHORT = {"female": "F", "male": "M", "African-American": "AA", "European": "EA"}


def _scored_eec(scores: Mapping[str, Sequence[float]], eec: pd.DataFrame | None) -> pd.DataFrame:
    """The EEC frame with one score column per system, after checking lengths and names."""
    eec = generate_eec() if eec is None else eec
    if not scores:
        raise ConfigError("no systems to report: pass at least one name -> EEC scores entry")
    columns = {}
    for name, values in scores.items():
        if name in eec.columns:
            raise ConfigError(f"system name {name!r} collides with an EEC column; rename the system")
        values = np.asarray(values, dtype=float)
        if values.shape != (len(eec),):
            raise ConfigError(f"system {name!r} has {values.shape} scores; need one per EEC row ({len(eec)})")
        columns[name] = values
    return eec.assign(**columns)


def _markdown(stats: pd.DataFrame, variant: str, alpha: float) -> str:
    """The statistics as one readable table per comparison, with what the columns mean."""
    family = int(stats["n_tests"].iloc[0])
    lines = [
        "# Bias on the Equity Evaluation Corpus",
        "",
        f"Paired t-tests (scipy `ttest_rel`), Bonferroni over {family} tests per subset, alpha = {alpha}. "
        f"Gender pairs: `{variant}` variant "
        + ("(10 noun-phrase pairs + female/male name means, 1,584 on the full corpus)." if variant == "paper"
           else "(10 noun-phrase pairs only, 1,440 on the full corpus)."),
        "Race pairs: African-American vs European name means ("
        + ("144)." if variant == "paper" else "140: seed 004's groupby drops the 4 neutral templates).")
        + " Delta = first group - second group.",
    ]
    for comparison, (a, b) in GROUPS.items():
        rows = stats[stats["comparison"] == comparison]
        if rows.empty:
            continue
        sa, sb = _SHORT[a], _SHORT[b]
        table = pd.DataFrame({
            "system": rows["system"], "subset": rows["subset"], "pairs": rows["n_pairs"],
            f"mean Δ ({sa}−{sb})": rows["mean_delta"], "t": rows["t"],
            # p-values span many orders of magnitude: scientific notation, not a fixed 3 decimals.
            "p (Bonferroni)": [f"{p:.3g}" for p in rows["p_bonferroni"]], "verdict": rows["verdict"],
            f"{sa}>{sb}": rows["n_a_higher"], f"{sa}<{sb}": rows["n_b_higher"], "equal": rows["n_equal"],
            f"mean Δ where {sa}>{sb}": rows["mean_delta_a_higher"],
            f"mean Δ where {sa}<{sb}": rows["mean_delta_b_higher"],
        })
        lines += ["", f"## {comparison.capitalize()} ({a} vs {b})", "", markdown_table(table, floatfmt=".4f")]
    return "\n".join(lines) + "\n"


def _matplotlib_at_least(major: int, minor: int) -> bool:
    import matplotlib

    return tuple(int(part) for part in matplotlib.__version__.split(".")[:2]) >= (major, minor)


def _plot(pairs: pd.DataFrame, stats: pd.DataFrame, comparison: str, systems: list[str], path: Path) -> Path:
    """Left: distribution of pair deltas per system (mean marked); right: the split of pairs by sign."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = GROUPS[comparison]
    sa, sb = _SHORT[a], _SHORT[b]
    rows = stats[(stats["comparison"] == comparison) & (stats["subset"] == "all")].set_index("system")
    deltas = [pairs.loc[(pairs["system"] == s) & (pairs["comparison"] == comparison), "delta"].to_numpy()
              for s in systems]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.55 * len(systems) + 2.2), sharey=True)
    y = np.arange(len(systems))
    # ``orientation`` replaced ``vert`` in matplotlib 3.10; pyproject still allows 3.8.
    horizontal = {"orientation": "horizontal"} if _matplotlib_at_least(3, 10) else {"vert": False}
    left.boxplot(deltas, positions=y, widths=0.6, showfliers=False, **horizontal)
    left.scatter([d.mean() for d in deltas], y, color="tab:red", zorder=3, label="mean Δ")
    left.axvline(0, color="grey", linewidth=0.8)
    left.set_yticks(y, [f"{s}{' *' if rows.loc[s, 'significant'] else ''}" for s in systems], fontsize=9)
    left.set_xlabel(f"score({sa}) − score({sb}) per pair   (* significant after Bonferroni)")
    left.legend(fontsize=8, loc="lower right")
    shares = rows.loc[systems, ["n_a_higher", "n_equal", "n_b_higher"]].to_numpy(dtype=float)
    shares = shares / shares.sum(axis=1, keepdims=True)
    start = np.zeros(len(systems))
    for k, (label, color) in enumerate([(f"{sa}>{sb}", "tab:orange"), ("equal", "lightgrey"),
                                        (f"{sa}<{sb}", "tab:blue")]):
        right.barh(y, shares[:, k], left=start, color=color, label=label)
        start += shares[:, k]
    right.set_xlim(0, 1)
    right.set_xlabel("share of pairs")
    right.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
    left.invert_yaxis()
    fig.suptitle(f"{comparison.capitalize()} bias on the EEC ({a} vs {b})", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def write_bias_report(
    scores: Mapping[str, Sequence[float]],
    out_dir: str | Path,
    *,
    eec: pd.DataFrame | None = None,
    variant: str = "paper",
    subsets: Sequence[str] = ("all", "neutral"),
    alpha: float = 0.05,
    n_tests: int | None = None,
) -> dict[str, Path]:
    """Write the bias report of ``scores`` (system -> one score per ``eec`` row) into ``out_dir``.

    ``eec`` defaults to :func:`generate_eec`; the other arguments go to
    :func:`demoscope.bias.bias_statistics`. Writes ``bias_statistics.csv``
    (tidy, one row per system x comparison x subset), ``bias_statistics.md``,
    ``bias_pairs.csv`` (every pair's delta) and the plots ``gender_bias.png``
    and ``race_bias.png`` (subset "all"). Returns ``{name: path}``.
    """
    scored = _scored_eec(scores, eec)
    systems = list(scores)
    subsets = list(subsets) if "all" in subsets else ["all", *subsets]  # the plots need "all"
    stats = bias_statistics(scored, systems, variant=variant, subsets=subsets, alpha=alpha, n_tests=n_tests)
    pairs = paired_differences(scored, systems, variant)
    out = Path(out_dir)
    return {
        "statistics_csv": atomic_write(out / "bias_statistics.csv", lambda tmp: stats.to_csv(tmp, index=False)),
        "statistics_md": atomic_write_text(out / "bias_statistics.md", _markdown(stats, variant, alpha)),
        "pairs_csv": atomic_write(out / "bias_pairs.csv", lambda tmp: pairs.to_csv(tmp, index=False)),
        "gender_plot": _plot(pairs, stats, "gender", systems, out / "gender_bias.png"),
        "race_plot": _plot(pairs, stats, "race", systems, out / "race_bias.png"),
    }
