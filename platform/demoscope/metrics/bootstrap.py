"""Percentile-bootstrap confidence intervals for mean distances.

SubPOP reports mean WD per dataset and per subpopulation (§4.3); these
helpers put an interval around such means by resampling rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# Cap on resampled values held at once (n_boot x n indices); beyond it the
# draws are made in chunks so memory stays bounded for large frames.
_MAX_DRAWS_PER_CHUNK = 5_000_000


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``values`` with a percentile-bootstrap confidence interval.

    NaNs are ignored (non-ordinal questions have NaN WD, SubPOP §4.2).
    Draws ``n_boot`` resamples of the remaining n values with replacement,
    vectorised as an index matrix (chunked when large), and returns
    ``(mean, low, high)`` where mean is the sample mean and low/high are the
    ``(1 - confidence)/2`` and ``(1 + confidence)/2`` quantiles of the
    resampled means. Same seed, same interval. All-NaN or empty input gives
    ``(nan, nan, nan)``.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    x = np.asarray(values, dtype=float).ravel()
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return (float("nan"),) * 3

    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, _MAX_DRAWS_PER_CHUNK // n)
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(rows, n))
        means[start : start + rows] = x[idx].mean(axis=1)

    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(x.mean()), float(low), float(high)


def grouped_bootstrap_ci(
    frame: pd.DataFrame,
    value_col: str,
    by: str | Sequence[str],
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`bootstrap_ci` of ``value_col`` within each group of ``by``.

    Takes a long frame (e.g. one row per question x group with an ``emd``
    column) and returns one row per group with columns
    ``[*by, "mean", "low", "high", "n"]``, where n counts the non-NaN values
    used. Every group uses the same seed, so a group's interval does not
    depend on which other groups are present. Groups are sorted by key.
    """
    keys = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*keys, value_col] if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks column(s) {missing}; it has {list(frame.columns)}")

    rows = []
    for key, group in frame.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        values = group[value_col].to_numpy(dtype=float)
        mean, low, high = bootstrap_ci(values, n_boot=n_boot, confidence=confidence, seed=seed)
        rows.append((*key, mean, low, high, int(np.count_nonzero(~np.isnan(values)))))
    return pd.DataFrame(rows, columns=[*keys, "mean", "low", "high", "n"])
