"""Percentile-bootstrap confidence intervals for mean distances, by row or by question.

SubPOP reports mean WD per dataset and per subpopulation (§4.3); these
helpers put an interval around such means, and around differences of two
systems' means measured on the same rows.

Two properties hold for every function here:

- **Order-free.** Rows are put in a canonical order (cluster key, then
  value) before any draw, so the same rows in any order, with the same
  seed, give bit-identical intervals. Ray Data hands rows back in a
  different order on every run; resampling by position would not be
  reproducible.
- **Clustered when asked.** With ``clusters`` (e.g. the question key),
  whole clusters are resampled: the 22 subpopulation rows of one question
  share the question's difficulty, so treating them as independent rows
  makes intervals too narrow.

The resampling procedure, stated once (the tests replay it in a plain loop):
drop rows whose value is NaN; sort the remaining clusters by key and give
them indices ``0..C-1`` (without ``clusters`` every row is its own cluster,
rows sorted by value); with ``rng = np.random.default_rng(seed)``, for each
resample ``b = 0..n_boot-1`` in turn draw ``idx = rng.integers(0, C, C)``;
the resampled estimate is the ratio of sums ``sum(S[idx]) / sum(N[idx])``,
where ``S[c]`` and ``N[c]`` are the sum and count of cluster c's values.
That is the mean over all rows of the drawn clusters, pooled (a cluster
drawn twice counts twice). The interval is the ``(1 - confidence)/2`` and
``(1 + confidence)/2`` quantiles (numpy's default linear rule) of the
``n_boot`` estimates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# Cap on resampled values held at once (resamples x clusters x statistics);
# beyond it the draws are made in chunks so memory stays bounded.
_MAX_DRAWS_PER_CHUNK = 5_000_000

Interval = tuple[float, float, float]


def _check(n_boot: int, confidence: float) -> None:
    """Reject settings that make no interval."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _cluster_totals(columns: np.ndarray, clusters: Sequence | np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums ``S`` (C x k) and row counts ``N`` (C) of ``columns`` (rows x k), in canonical order.

    Rows with a NaN in any column are dropped first. Rows are sorted by
    (cluster key, column values) so that sums, which depend on the order of
    addition in the last bit, do not depend on the order the rows came in.
    Without ``clusters`` each row is its own cluster (rows sorted by value).
    """
    keep = ~np.isnan(columns).any(axis=1)
    columns = columns[keep]
    if clusters is None:
        order = np.lexsort(columns.T[::-1])
        return columns[order], np.ones(len(columns))
    keys = np.asarray(pd.Series(np.asarray(clusters, dtype=object)[keep]).astype(str))
    codes, uniques = pd.factorize(keys, sort=True)  # cluster index = rank of its key
    order = np.lexsort((*columns.T[::-1], codes))
    codes, columns = codes[order], columns[order]
    sums = np.column_stack([np.bincount(codes, weights=col, minlength=len(uniques)) for col in columns.T])
    return sums, np.bincount(codes, minlength=len(uniques)).astype(float)


def _resampled_totals(sums: np.ndarray, counts: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Totals over resampled clusters: ``(n_boot x k sums, n_boot counts)``.

    ``sums`` is C x k per-cluster sums and ``counts`` the C per-cluster row
    counts, in canonical order. Resample b draws ``rng.integers(0, C, C)``
    (the module's documented procedure) and adds the drawn clusters' sums
    and counts. Drawn in chunks of whole resamples, which leaves the random
    stream unchanged.
    """
    n_clusters, k = sums.shape
    rng = np.random.default_rng(seed)
    totals, sizes = np.empty((n_boot, k)), np.empty(n_boot)
    sums = np.ascontiguousarray(sums)
    chunk = max(1, _MAX_DRAWS_PER_CHUNK // (n_clusters * (k + 1)))
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        idx = rng.integers(0, n_clusters, size=(rows, n_clusters))
        for j in range(k):  # one contiguous gather per statistic: 3x faster than a 3-D gather
            totals[start : start + rows, j] = sums[:, j][idx].sum(axis=1)
        sizes[start : start + rows] = counts[idx].sum(axis=1)
    return totals, sizes


def _percentiles(estimates: np.ndarray, confidence: float) -> tuple[float, float]:
    """The two-sided percentile interval of the bootstrap estimates (NaN if any estimate is undefined)."""
    if not np.isfinite(estimates).all():
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = np.quantile(estimates, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    clusters: Sequence | np.ndarray | None = None,
) -> Interval:
    """Mean of ``values`` with a percentile-bootstrap confidence interval, row or clustered.

    NaNs are ignored (non-ordinal questions have NaN WD, SubPOP §4.2).
    Returns ``(mean, low, high)``: mean is the plain mean of the non-NaN
    values; low/high come from ``n_boot`` resamples drawn as the module
    docstring states. Without ``clusters`` rows are resampled as if
    independent (the row bootstrap); with ``clusters`` (one key per value,
    e.g. the question key) whole clusters are resampled and each resample's
    estimate is the pooled mean over the drawn clusters' rows (ratio of
    sums). Same values and seed, in any order: the identical interval.
    All-NaN or empty input gives ``(nan, nan, nan)``.
    """
    _check(n_boot, confidence)
    x = np.asarray(values, dtype=float).reshape(-1, 1)
    sums, counts = _cluster_totals(x, clusters)
    if counts.size == 0:
        return (float("nan"),) * 3
    totals, sizes = _resampled_totals(sums, counts, n_boot, seed)
    low, high = _percentiles(totals[:, 0] / sizes, confidence)
    return float(sums[:, 0].sum() / counts.sum()), low, high


def paired_bootstrap_ci(
    first: Sequence[float] | np.ndarray,
    other: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    clusters: Sequence | np.ndarray | None = None,
) -> dict[str, float]:
    """Mean difference ``first - other`` and relative gap reduction, with paired bootstrap intervals.

    ``first`` and ``other`` are two systems' values on the same rows (e.g.
    WD of the tuned and of the base model); only rows where both are
    defined count. Each resample draws one set of clusters (or rows) and
    evaluates both systems on it, which is what makes the interval paired:
    what the two systems share (a hard question) cancels. Per resample the
    difference is ``(sum first - sum other) / rows`` and the gap reduction
    ``(sum other - sum first) / sum other`` (:func:`relative_gap_reduction`
    of the pooled means). Returns ``{"mean", "low", "high", "gap_reduction",
    "gap_low", "gap_high", "n", "clusters"}``; the gap entries are NaN when
    ``other`` sums to 0, and everything is NaN when no row has both.
    """
    _check(n_boot, confidence)
    a, b = np.asarray(first, dtype=float).ravel(), np.asarray(other, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"first and other must have one value per row, got {a.size} and {b.size}")
    sums, counts = _cluster_totals(np.column_stack([a - b, b]), clusters)
    nan = float("nan")
    if counts.size == 0:
        return {"mean": nan, "low": nan, "high": nan, "gap_reduction": nan, "gap_low": nan, "gap_high": nan,
                "n": 0, "clusters": 0}
    totals, sizes = _resampled_totals(sums, counts, n_boot, seed)
    # The difference column is summed directly (not as sum(a) - sum(b)), so
    # identical systems give exact zeros in every resample.
    diff_sum, other_sum = sums.sum(axis=0)
    low, high = _percentiles(totals[:, 0] / sizes, confidence)
    gap, gap_low, gap_high = nan, nan, nan
    if other_sum != 0:
        gap = float(-diff_sum / other_sum)
        with np.errstate(divide="ignore", invalid="ignore"):
            gap_low, gap_high = _percentiles(-totals[:, 0] / totals[:, 1], confidence)
    return {"mean": float(diff_sum / counts.sum()), "low": low, "high": high, "gap_reduction": gap,
            "gap_low": gap_low, "gap_high": gap_high, "n": int(counts.sum()), "clusters": int(counts.size)}


def grouped_bootstrap_ci(
    frame: pd.DataFrame,
    value_col: str,
    by: str | Sequence[str],
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cluster_col: str | None = None,
) -> pd.DataFrame:
    """:func:`bootstrap_ci` of ``value_col`` within each group of ``by``.

    Takes a long frame (e.g. one row per question x group with a ``wd``
    column) and returns one row per group with columns
    ``[*by, "mean", "low", "high", "n"]``, where n counts the non-NaN values
    used. With ``cluster_col`` (e.g. ``"qkey"``) the clusters within each
    group are resampled. Every group uses the same seed, so a group's
    interval does not depend on which other groups are present. Groups are
    sorted by key.
    """
    keys = [by] if isinstance(by, str) else list(by)
    needed = [*keys, value_col, *([cluster_col] if cluster_col else [])]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks column(s) {missing}; it has {list(frame.columns)}")

    rows = []
    for key, group in frame.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        values = group[value_col].to_numpy(dtype=float)
        clusters = group[cluster_col].to_numpy() if cluster_col else None
        mean, low, high = bootstrap_ci(values, n_boot=n_boot, confidence=confidence, seed=seed, clusters=clusters)
        rows.append((*key, mean, low, high, int(np.count_nonzero(~np.isnan(values)))))
    return pd.DataFrame(rows, columns=[*keys, "mean", "low", "high", "n"])
