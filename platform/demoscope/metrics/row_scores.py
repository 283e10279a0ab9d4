"""Per-row scores beyond SubPOP's WD, and the scores built from them: what ``demoscope evaluate`` adds.

Each (question, group) row of a predictions frame gets, for every system
with a ``dist_<system>`` column, ``tv_``, ``js_`` and ``kl_<system>``
(:mod:`demoscope.metrics.distances`) against the row's human distribution
(:func:`~demoscope.metrics.opinion.human_distribution`: the refusal share
dropped, the rest renormalised). ``uniform`` is the uniform distribution over
*all* scored options for these three, as SimBench defines its baseline; its
``wd_uniform`` stays SubPOP's (uniform over the ordinal options). Rows that
know their respondents (``n_eff``) get ``wd_`` and ``tv_noise_floor``
(:mod:`demoscope.metrics.noise_floor`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from demoscope.metrics.distances import uniform
from demoscope.metrics.noise_floor import answered_sizes, distances_to, noise_floors
from demoscope.metrics.opinion import human_distribution

DISTANCE_METRICS = ("tv", "js", "kl")
FLOOR_METRICS = ("wd", "tv")
NOISE_FLOOR = "noise_floor"


def humans(frame: pd.DataFrame) -> list[np.ndarray]:
    """Each row's scored human distribution."""
    return [human_distribution(list(d), list(o)) for d, o in zip(frame["output_dist"], frame["ordinal"])]


def add_distances(frame: pd.DataFrame, systems: Sequence[str]) -> pd.DataFrame:
    """A copy of ``frame`` with ``tv_``, ``js_`` and ``kl_<system>`` per system (NaN where a system has no answer)."""
    out = frame.copy()
    people = humans(frame)
    for system in systems:
        if system == "uniform":
            answers = [uniform(len(h)) for h in people]
        elif f"dist_{system}" in frame:
            answers = [None if d is None else np.asarray(d, dtype=float)[: len(h)]
                       for d, h in zip(frame[f"dist_{system}"], people)]
        else:
            continue
        for metric in DISTANCE_METRICS:
            out[f"{metric}_{system}"] = [
                np.nan if a is None else distances_to(h[None, :], a, o, metric)[0]
                for h, a, o in zip(people, answers, frame["ordinal"])]
    return out


def add_noise_floor(frame: pd.DataFrame, draws: int = 200, seed: int = 0) -> pd.DataFrame:
    """A copy with ``wd_`` and ``tv_noise_floor`` per row, seeded per row's key; unchanged without any ``n_eff``."""
    out = frame.copy()
    sizes = answered_sizes(frame)
    if np.isnan(sizes).all():  # no respondent counts: no floor columns, so reports say it is unknown
        return out
    keys = list(frame[["qkey", "attribute", "group"]].itertuples(index=False, name=None))
    people = humans(frame)
    for metric in FLOOR_METRICS:
        out[f"{metric}_{NOISE_FLOOR}"] = noise_floors(people, sizes, list(frame["ordinal"]), keys, metric, draws, seed)
    return out


def simbench_score(tv_model: Sequence[float], tv_uniform: Sequence[float]) -> float:
    """SimBench's score of one test set: ``100 * (1 - TV / mean TV of the uniform baseline)``, averaged over rows.

    As ``calculate_simbench_score.py`` of github.com/tsor13/SimBench_release
    computes it: the uniform baseline's mean TV over the set's rows (those
    with more than one option; NaN rows skipped) normalises each row's TV,
    and the score is the mean of ``100 * (1 - TV_row / norm)`` over rows with
    a TV. 0 is the uniform baseline, 100 a perfect match; negative is worse
    than uniform.
    """
    model, base = np.asarray(tv_model, dtype=float), np.asarray(tv_uniform, dtype=float)
    norm = np.nanmean(base) if not np.isnan(base).all() else np.nan
    if not norm > 0 or np.isnan(model).all():
        return float("nan")
    return float(np.nanmean(100.0 * (1.0 - model / norm)))
