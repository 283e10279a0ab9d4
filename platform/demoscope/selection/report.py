"""The selection report: ensemble scores, greedy choice, the error check, and estimates against real fine-tunes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from demoscope.io import atomic_write_text

VERIFICATION_COLUMNS = ["check", "subset", "estimated_loss", "real_loss", "relative_error", "real_option_kl",
                        "estimate_s", "fine_tune_s", "speedup"]


def rank_agreement(verification: pd.DataFrame) -> float:
    """Spearman's rho of estimated vs real losses over the verified subsets (NaN below 3 subsets or with ties only)."""
    if len(verification) < 3:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(verification.estimated_loss, verification.real_loss).statistic)


@dataclass(frozen=True)
class SelectionOutcome:
    """What a selection run found: scores per source, the greedy choice, the error check and the verification."""

    scores: pd.DataFrame          # source, score, samples, noisy (best first)
    separation: float             # share of (clean, noisy) pairs ranked right; NaN without noisy sources
    selected: Sequence[str]
    estimated_loss: float
    error_check: dict             # ApproximationError fields + the step's scale
    verification: pd.DataFrame    # VERIFICATION_COLUMNS


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None  # strict JSON has no NaN


def write_selection_report(out: Path, outcome: SelectionOutcome, task: str, scores_note: str, fine_tunes: str) -> None:
    """``OUT/report.md`` (with ``scores.png`` beside it) and ``OUT/metrics.json``, each written atomically."""
    from demoscope.reports import markdown_table

    rho = rank_agreement(outcome.verification)
    spearman = (f"Spearman rank correlation of estimated and real losses over the {len(outcome.verification)} "
                f"subsets: **{rho:.2f}**." if np.isfinite(rho) else "")
    check = outcome.error_check
    text = f"""# Data-source selection (GradEx, first-order estimates)

Task: {task}.

## Random-ensemble scores (green clean, red noisy)

{scores_note}

![scores](scores.png)

{markdown_table(outcome.scores)}

## Greedy forward selection

Selected {len(outcome.selected)} sources: {', '.join(outcome.selected)} (estimated loss
{outcome.estimated_loss:.4f}); see `greedy.csv`.

First-order error check (the reference's): with the adapter actually moved by
the selection's step at scale {check['scale']:g}, the first-order outputs of
{check['n_samples']} of its samples are off by a mean squared relative error of
**{check['mean_squared_relative_error']:.2e}**, against
{check['baseline_mean_squared_relative_error']:.2e} if the outputs were taken as unmoved
(median {check['median_relative_error']:.2e} against {check['baseline_median_relative_error']:.2e};
the gradient term brings {check['closer_share']:.0%} of the samples closer). A sample
whose probability crosses one of the reference's clamp thresholds jumps, and
can dominate the mean squares.

## Estimated vs real fine-tunes ({fine_tunes})

{spearman}

{markdown_table(outcome.verification[[c for c in VERIFICATION_COLUMNS if c in outcome.verification]])}
"""
    atomic_write_text(out / "report.md", text)
    metrics = {"separation": _finite(outcome.separation), "selected": list(outcome.selected), "spearman": _finite(rho),
               "error_check": check, "verification": outcome.verification.to_dict(orient="records")}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
