"""Write distributions: Parquet (typed lists) and SubPOP-compatible CSV (list literals)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from demoscope.io import atomic_write_all
from demoscope.surveys.validation import parse_list_cells
from demoscope.tables import read_table

LIST_COLUMNS = ("options", "responses", "ordinal")
TEXT_COLUMNS = ("qkey", "attribute", "group", "question")


def list_literal(values) -> str:
    """``[0.25, 0.75]``: a list or array as the Python literal SubPOP's CSVs hold (``ast.literal_eval`` reads it back).

    NumPy scalars become plain numbers first: NumPy 2 would print ``np.float64(0.25)``.
    """
    return str([x.item() if isinstance(x, np.generic) else x for x in values])


def to_subpop_csv_frame(distributions: pd.DataFrame) -> pd.DataFrame:
    """Lists become Python-literal strings, as SubPOP's CSVs hold them (``ast.literal_eval`` reads them back)."""
    frame = distributions.copy()
    for column in LIST_COLUMNS:
        frame[column] = frame[column].map(list_literal)
    return frame


def write_distributions(
    distributions: pd.DataFrame, out_dir: str | Path, texts: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """Write ``distributions.parquet``, ``distributions.csv`` and ``texts`` (file name -> UTF-8 text) into ``out_dir``.

    All files are replaced together or not at all (:func:`demoscope.io.atomic_write_all`):
    a failure while writing any of them leaves every previous file in ``out_dir``
    as it was, so a run's distributions never sit beside another run's summary.
    ``texts`` are renamed into place last, in their order (give the summary last).
    Returns the written paths by key: ``parquet``, ``csv`` and each text's name.
    """
    out_dir = Path(out_dir)
    writes = {
        out_dir / "distributions.parquet": lambda tmp: distributions.to_parquet(tmp, index=False),
        out_dir / "distributions.csv": lambda tmp: to_subpop_csv_frame(distributions).to_csv(tmp, index=False),
    }
    for name, text in (texts or {}).items():
        writes[out_dir / name] = lambda tmp, text=text: tmp.write_text(text, encoding="utf-8")
    written = atomic_write_all(writes)
    return dict(zip(["parquet", "csv", *(texts or {})], written))


def read_distributions(path: str | Path) -> pd.DataFrame:
    """Read our Parquet or a SubPOP-format CSV back into a frame with real lists.

    CSV key and text columns stay text (a qkey like ``"0123"`` is not turned
    into a number); a list cell that is not a Python list literal raises
    :class:`SurveyFormatError` naming its row and column. A missing, misnamed
    or unreadable file raises :class:`~demoscope.errors.ConfigError`
    (:func:`demoscope.tables.read_table`); the rows' contents are checked by
    :func:`demoscope.surveys.validation.check_distributions`.
    """
    path = Path(path)
    frame = read_table(path, "distributions file", (".parquet", ".csv"),
                       csv_options={"dtype": {column: str for column in TEXT_COLUMNS}})
    for column in LIST_COLUMNS:
        if column in frame:
            frame[column] = parse_list_cells(frame, column, str(path))
    return frame
