"""Reports: Markdown tables and matplotlib plots for every evaluation."""

from demoscope.reports.plots import (
    plot_bars,
    plot_group_distributions,
    plot_group_wasserstein,
    plot_wd_histogram,
    save_figure,
)
from demoscope.reports.tables import markdown_table

__all__ = [
    "markdown_table", "plot_bars", "plot_group_distributions", "plot_group_wasserstein", "plot_wd_histogram",
    "save_figure",
]
