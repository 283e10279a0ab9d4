"""Distances between discrete distributions over the same options."""

from __future__ import annotations

import numpy as np


def total_variation(p, q) -> float:
    """Total variation distance ``0.5 * sum |p - q|`` (0 = identical, 1 = disjoint)."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"distributions differ in length: {p.shape[0]} vs {q.shape[0]}")
    return float(0.5 * np.abs(p - q).sum())
