"""Temperature scaling of a system's option distributions, fitted on a few labelled questions.

A model's answer distributions are often too sharp (instruct models) or too
flat; one temperature ``T`` per subpopulation (or one for all), fitted on
``k`` questions whose human answers are known, rescales them as
``q_T ∝ q ** (1 / T)`` (Meister et al. 2025, "Benchmarking Distributional
Alignment of Large Language Models", github.com/nicolemeister/
benchmarking-distributional-alignment: temperature scaling against human
distributions). :func:`cross_validated_calibration` measures what that buys
on questions the fit never saw: questions are split into folds of ``k``;
each fold in turn is the labelled set and every other question is scored
with the temperatures it gave.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from demoscope.metrics.noise_floor import distances_to

# log T is searched in this range: T from ~0.05 (sharpen a lot) to ~20 (almost uniform).
LOG_T_BOUNDS = (-3.0, 3.0)


def temperature_scale(q: Sequence[float], temperature: float) -> np.ndarray:
    """``q ** (1 / T)`` renormalised (computed in log space; zeros stay zero)."""
    q = np.asarray(q, dtype=float)
    with np.errstate(divide="ignore"):
        logits = np.log(q) / temperature
    finite = np.isfinite(logits)
    if not finite.any():
        return q
    weights = np.where(finite, np.exp(logits - logits[finite].max()), 0.0)
    return weights / weights.sum()


def mean_distance(models: Sequence[Sequence[float]], humans: Sequence[Sequence[float]],
                  ordinals: Sequence[Sequence[float]], metric: str, temperature: float = 1.0) -> float:
    """Mean ``metric`` between each human distribution and its model distribution at ``temperature`` (NaN skipped)."""
    values = [distances_to(np.asarray([h], dtype=float), temperature_scale(m, temperature), o, metric)[0]
              for m, h, o in zip(models, humans, ordinals)]
    return float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")


def fit_temperature(models: Sequence[Sequence[float]], humans: Sequence[Sequence[float]],
                    ordinals: Sequence[Sequence[float]], metric: str = "wd") -> float:
    """The temperature that minimises the mean ``metric`` over these rows (bounded search over log T)."""
    if not len(models):
        raise ValueError("no rows to fit a temperature on")
    result = minimize_scalar(lambda log_t: mean_distance(models, humans, ordinals, metric, float(np.exp(log_t))),
                             bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-3})
    return float(np.exp(result.x))


def cross_validated_calibration(frame: pd.DataFrame, model_column: str, k: int, metric: str = "wd",
                                by: Sequence[str] = ("attribute", "group"), seed: int = 0) -> pd.DataFrame:
    """Per row, its distance before and after temperature scaling fitted on other questions only.

    ``frame`` has ``qkey``, ``human`` (the scored human distribution),
    ``ordinal``, ``model_column`` (the system's distribution) and the ``by``
    columns (the default: one temperature per subpopulation; ``()``: one for
    all). Questions are shuffled with ``seed`` and cut into folds of ``k``;
    for each fold, temperatures are fitted on its rows and applied to the
    rows of every other question. A row's ``after`` is the mean over the
    folds it was scored in. Returns the frame's ``qkey`` and ``by`` columns
    with ``before``, ``after`` and ``temperature`` (the mean temperature
    applied to the row).
    """
    questions = np.array(sorted(frame["qkey"].unique()))
    if k < 1 or k >= len(questions):
        raise ValueError(f"calibrating on k={k} questions needs 1 <= k < {len(questions)} (the questions in the set)")
    rng = np.random.default_rng(seed)
    order = questions[rng.permutation(len(questions))]
    folds = [order[i:i + k] for i in range(0, len(order), k)]
    before = np.array([distances_to(np.asarray([h], dtype=float), np.asarray(m, dtype=float), o, metric)[0]
                       for h, m, o in zip(frame["human"], frame[model_column], frame["ordinal"])])
    after_sum, temp_sum, count = np.zeros(len(frame)), np.zeros(len(frame)), np.zeros(len(frame))
    cells = frame[list(by)].astype(str).agg("\x1f".join, axis=1).to_numpy() if by else np.zeros(len(frame))
    for fold in folds:
        fit_rows = frame["qkey"].isin(fold).to_numpy()
        for cell in np.unique(cells):
            fit = fit_rows & (cells == cell)
            test = ~fit_rows & (cells == cell)
            if not fit.any() or not test.any():
                continue
            part = frame[fit]
            temperature = fit_temperature(list(part[model_column]), list(part["human"]), list(part["ordinal"]), metric)
            for i in np.flatnonzero(test):
                scaled = temperature_scale(frame[model_column].iloc[i], temperature)
                after_sum[i] += distances_to(np.asarray([frame["human"].iloc[i]], dtype=float), scaled,
                                             frame["ordinal"].iloc[i], metric)[0]
                temp_sum[i] += temperature
                count[i] += 1
    with np.errstate(invalid="ignore"):
        out = frame[["qkey", *by]].copy()
        out["before"], out["after"], out["temperature"] = before, after_sum / count, temp_sum / count
    return out
