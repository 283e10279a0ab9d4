"""Markdown tables (no extra dependency): what every report prints."""

from __future__ import annotations

import pandas as pd


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """Render ``frame`` as a GitHub Markdown table; floats use ``floatfmt``."""

    def cell(value) -> str:
        if isinstance(value, float):
            return format(value, floatfmt)
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def interval_cell(mean: float, low: float, high: float, fmt: str = ".4f") -> str:
    """``mean [low, high]`` as one table cell, e.g. ``0.1912 [0.1870, 0.1954]``; an undefined mean gives ``n/a``."""
    if pd.isna(mean):
        return "n/a"
    return f"{mean:{fmt}} [{low:{fmt}}, {high:{fmt}}]"
