"""Labelled text files for distillation: ``text, label`` and, with teacher soft labels, ``label_0, label_1``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from demoscope.errors import ConfigError
from demoscope.tables import read_table


def read_labelled(path: str | Path, soft: bool = False) -> pd.DataFrame:
    """Read ``.csv`` / ``.jsonl`` / ``.parquet`` with ``text`` and a 0/1 ``label`` (and ``label_0, label_1`` if
    ``soft``).

    Errors name the file and, for bad values, the first offending row.
    """
    path = Path(path)
    frame = read_table(path, "labelled text file", (".csv", ".jsonl", ".parquet"))
    needed = ["text", "label"] + (["label_0", "label_1"] if soft else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        hint = " (soft labels come from `demoscope distill` or a teacher labelling job)" if soft else ""
        raise ConfigError(f"labelled text file {path} lacks column(s) {missing}{hint}")
    bad = ~frame["label"].isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ConfigError(f"labelled text file {path}, row {row}: label must be 0 or 1, "
                          f"got {frame['label'].iloc[row]!r}")
    if soft:
        probs = frame[["label_0", "label_1"]].to_numpy(dtype=float)
        off = ~np.isclose(probs.sum(axis=1), 1.0, atol=1e-4) | (probs < 0).any(axis=1)
        if off.any():
            row = int(np.flatnonzero(off)[0])
            raise ConfigError(f"labelled text file {path}, row {row}: label_0 + label_1 must be 1, "
                              f"got {probs[row].tolist()}")
    return plain_labels(frame, soft)


def plain_labels(frame: pd.DataFrame, soft: bool = True) -> pd.DataFrame:
    """``frame`` with NumPy dtypes: int64 label, float64 soft labels, text as str; index reset.

    Frames that come back from Ray Data carry Arrow-backed dtypes, in which
    ``bool_series == int64[pyarrow]_series`` is False everywhere; a plain
    frame compares, sums and saves the way every reader expects.
    """
    dtypes = {"label": "int64", **({"label_0": "float64", "label_1": "float64"} if soft else {})}
    plain = frame.astype({c: t for c, t in dtypes.items() if c in frame.columns}).reset_index(drop=True)
    plain["text"] = plain["text"].astype(str)
    return plain


def teacher_agreement(frame: pd.DataFrame) -> float:
    """Share of rows whose soft label (``label_1 > 0.5``) agrees with the hard ``label``."""
    return float(np.mean((frame["label_1"].to_numpy(dtype=float) > 0.5) == (frame["label"].to_numpy(dtype=int) == 1)))
