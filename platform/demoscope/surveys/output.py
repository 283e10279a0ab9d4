"""Write distributions: Parquet (typed lists) and SubPOP-compatible CSV (list literals)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from demoscope.io import atomic_write

LIST_COLUMNS = ("options", "responses", "ordinal")


def to_subpop_csv_frame(distributions: pd.DataFrame) -> pd.DataFrame:
    """Lists become Python-literal strings, as SubPOP's CSVs hold them (``ast.literal_eval`` reads them back)."""
    frame = distributions.copy()
    for column in LIST_COLUMNS:
        frame[column] = frame[column].map(lambda values: str(list(values)))
    return frame


def write_distributions(distributions: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write ``distributions.parquet`` and ``distributions.csv`` atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    parquet = atomic_write(out_dir / "distributions.parquet", lambda tmp: distributions.to_parquet(tmp, index=False))
    csv = atomic_write(out_dir / "distributions.csv", lambda tmp: to_subpop_csv_frame(distributions).to_csv(tmp, index=False))
    return {"parquet": parquet, "csv": csv}


def read_distributions(path: str | Path) -> pd.DataFrame:
    """Read our Parquet or a SubPOP-format CSV back into a frame with real lists."""
    import ast

    path = Path(path)
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        for column in LIST_COLUMNS:
            if column in frame:
                frame[column] = frame[column].map(list)
        return frame
    frame = pd.read_csv(path)
    for column in LIST_COLUMNS:
        if column in frame:
            frame[column] = frame[column].map(ast.literal_eval)
    return frame
