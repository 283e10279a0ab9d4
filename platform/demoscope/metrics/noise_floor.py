"""The human noise floor: how far a perfect model would still score from a survey's estimate.

A (question, group) distribution is an estimate from a sample of people, so
even the population's true distribution sits some distance from it. For each
row we draw ``draws`` multinomial samples of ``n`` respondents from the
estimated distribution (a parametric bootstrap: the estimate stands in for the
population) and average the distance between each resampled estimate and the
distribution it was drawn from. That is the expected distance of a survey of
this size from its population: the score a model that knew the population
exactly would get, on average, so a system's *excess over the floor* is what
it could still improve. ``n`` is the Kish effective sample size of the row's
answered (non-refusal) responses.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from demoscope.metrics.distances import KL_SMOOTHING

METRICS = ("wd", "tv", "js", "kl")


def distances_to(estimates: np.ndarray, model: np.ndarray, ordinal: Sequence[float], metric: str) -> np.ndarray:
    """``metric`` between each row of ``estimates`` (``[D, K]``, human side) and one ``model`` distribution (``[K]``).

    The batched form of :func:`~demoscope.metrics.wasserstein.ordinal_wasserstein`,
    :func:`~demoscope.metrics.distances.total_variation`,
    :func:`~demoscope.metrics.distances.jensen_shannon` and
    :func:`~demoscope.metrics.distances.kl_divergence` (equal to them row by
    row; tested), so a floor of a few hundred draws per row costs milliseconds.
    """
    estimates = _rows(np.asarray(estimates, dtype=float))
    model = _rows(np.asarray(model, dtype=float)[None, :])[0]
    if metric == "tv":
        return 0.5 * np.abs(estimates - model).sum(axis=1)
    if metric == "js":
        return np.asarray(jensenshannon(estimates, np.broadcast_to(model, estimates.shape), base=2, axis=1))
    if metric == "kl":
        smoothed = (model + KL_SMOOTHING) / (1.0 + model.size * KL_SMOOTHING)
        return np.asarray(entropy(estimates, np.broadcast_to(smoothed, estimates.shape), axis=1))
    if metric == "wd":
        return _ordinal_wasserstein_rows(estimates, model, np.asarray(ordinal, dtype=float))
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _rows(p: np.ndarray) -> np.ndarray:
    """Each row normalised to sum 1 (rows with no mass left as they are)."""
    totals = p.sum(axis=1, keepdims=True)
    return np.divide(p, totals, out=p.copy(), where=totals > 0)


def _ordinal_wasserstein_rows(h: np.ndarray, m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """SubPOP's range-normalised ordinal WD (see ``ordinal_wasserstein``) for many human rows against one model."""
    if v.size == 0 or v.max() == v.min():
        return np.full(len(h), np.nan)
    order = np.argsort(v, kind="stable")
    keep = v[order] >= 0
    v, h, m = v[order][keep], h[:, order][:, keep], m[order][keep]
    if v.size == 0 or v.max() == v.min():
        return np.full(len(h), np.nan)
    totals = h.sum(axis=1, keepdims=True)
    h = np.where(totals > 0, h / np.where(totals > 0, totals, 1.0), 1.0 / v.size)  # no mass left: uniform
    m = m / m.sum() if m.sum() > 0 else np.full(v.size, 1.0 / v.size)
    gaps = np.diff(v)
    cum_h, cum_m = np.cumsum(h, axis=1)[:, :-1], np.cumsum(m)[:-1]
    return np.abs(cum_h - cum_m) @ gaps / (v[-1] - v[0])


def expected_sampling_distance(population: Sequence[float], n: float, ordinal: Sequence[float], metric: str,
                               draws: int, rng: np.random.Generator) -> float:
    """Mean distance between ``draws`` survey estimates of ``round(n)`` people and the ``population`` they sample.

    NaN when ``n`` is below 1 or the metric is undefined for the question (a
    non-ordinal question under ``wd``).
    """
    population = np.asarray(population, dtype=float)
    size = int(round(n))
    if size < 1 or not np.isfinite(population).all() or population.sum() <= 0:
        return float("nan")
    population = population / population.sum()
    samples = rng.multinomial(size, population, size=draws) / size
    values = distances_to(samples, population, ordinal, metric)
    return float(np.mean(values)) if not np.isnan(values).all() else float("nan")


def row_seed(seed: int, *key: object) -> int:
    """A seed for one row from the run's seed and the row's identity: the floor does not depend on row order."""
    return zlib.crc32("\x1f".join(map(str, (seed, *key))).encode())


def noise_floors(humans: Sequence[Sequence[float]], sizes: Sequence[float], ordinals: Sequence[Sequence[float]],
                 keys: Sequence[tuple], metric: str, draws: int = 200, seed: int = 0) -> np.ndarray:
    """Per row, :func:`expected_sampling_distance` with a seed derived from ``(seed, key)``.

    ``humans`` are the rows' estimated distributions over their scored
    options, ``sizes`` the effective numbers of respondents behind them (NaN:
    unknown, the floor is NaN), ``keys`` e.g. ``(qkey, attribute, group)``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    out = np.full(len(humans), np.nan)
    for i, (human, n, ordinal, key) in enumerate(zip(humans, sizes, ordinals, keys)):
        if n is not None and np.isfinite(n):
            rng = np.random.default_rng(row_seed(seed, *key))
            out[i] = expected_sampling_distance(human, n, ordinal, metric, draws, rng)
    return out


def answered_sizes(frame: pd.DataFrame, n_column: str = "n_eff") -> np.ndarray:
    """Effective respondents behind each row's scored shares: ``n_eff`` times the share that did not refuse.

    ``output_dist`` ends with the refusal share (SubPOP's format), which the
    scored distribution leaves out. NaN where the frame has no ``n_column``.
    """
    if n_column not in frame:
        return np.full(len(frame), np.nan)
    refusal = np.array([float(d[-1]) for d in frame["output_dist"]])
    return frame[n_column].to_numpy(dtype=float) * (1.0 - refusal)
