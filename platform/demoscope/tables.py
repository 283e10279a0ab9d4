"""One reader for the tables jobs are given (CSV, JSON lines, JSON, Parquet, text lines), picked by file suffix.

Each caller names what the file is (``"prompt file"``) and which suffixes it
accepts, and keeps its own column checks; the formats, and the errors for a
missing, misnamed or unreadable file, are the same for every job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from demoscope.errors import ConfigError

SUFFIXES = (".csv", ".jsonl", ".json", ".parquet", ".txt")


def read_table(
    path: str | Path,
    what: str,
    suffixes: Sequence[str] = (".csv", ".jsonl", ".parquet"),
    *,
    csv_options: Mapping[str, Any] | None = None,
    text_column: str = "text",
    hint: str = "",
) -> pd.DataFrame:
    """Read ``path`` by its suffix (case-insensitive), one of ``suffixes``, into a frame.

    ``.csv``: :func:`pandas.read_csv` with ``csv_options`` (e.g. ``dtype=str,
    keep_default_na=False`` to keep every cell the text it holds); ``.jsonl``:
    one JSON object per non-empty line, values as JSON gives them (no type
    guessing: ``"007"`` stays a string); ``.json``: a list of such objects;
    ``.parquet``: :func:`pandas.read_parquet`; ``.txt``: one row per non-empty
    line, in ``text_column``.

    Raises :class:`ConfigError` naming the file (``what`` and the path) when
    it does not exist (``hint`` is appended, e.g. how to make it), when its
    suffix is not one of ``suffixes`` (they are listed) and when it cannot be
    parsed (the parser's message is kept).
    """
    path = Path(path)
    unknown = [s for s in suffixes if s not in SUFFIXES]
    if unknown:
        raise ValueError(f"read_table reads {', '.join(SUFFIXES)}, not {', '.join(unknown)}")
    if not path.exists():  # a folder named *.parquet (a dataset of part files) is read whole
        raise ConfigError(f"{what} {path} does not exist{hint}")
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise ConfigError(f"{what} {path}: unsupported suffix {suffix!r} ({', '.join(suffixes)})")
    try:
        if suffix == ".csv":
            return pd.read_csv(path, **(csv_options or {}))
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".txt":
            lines = path.read_text(encoding="utf-8").splitlines()
            return pd.DataFrame({text_column: [line for line in lines if line.strip()]})
        if suffix == ".json":
            records = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(records, list):
                raise ConfigError(f"{what} {path}: expected a JSON list of records")
            return _objects(dict(enumerate(records)), f"{what} {path}, record")
        # json.loads per line: pandas.read_json would turn text that looks like a number ("007") into one.
        with path.open(encoding="utf-8") as handle:
            objects = {number: json.loads(line) for number, line in enumerate(handle, 1) if line.strip()}
        return _objects(objects, f"{what} {path}, line")
    except (ValueError, OSError) as error:  # JSONDecodeError, UnicodeDecodeError, pandas and pyarrow errors
        raise ConfigError(f"{what} {path} cannot be read: {error}") from None


def _objects(records: Mapping[int, object], where: str) -> pd.DataFrame:
    """A frame of JSON objects in order; anything else is refused with its number (``where`` names the unit)."""
    for number, record in records.items():
        if not isinstance(record, dict):
            raise ConfigError(f"{where} {number}: expected a JSON object, got {type(record).__name__}")
    return pd.DataFrame.from_records(list(records.values()))
