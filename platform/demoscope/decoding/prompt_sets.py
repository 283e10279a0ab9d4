"""Prompt sets for generation jobs: one prompt per line, or a table with a ``prompt`` column."""

from __future__ import annotations

from pathlib import Path

from demoscope.errors import ConfigError
from demoscope.tables import read_table


def read_prompts(path: str | Path, limit: int | None = None, column: str = "prompt") -> list[str]:
    """Prompts from ``.txt`` (one per non-empty line), ``.jsonl``, ``.csv`` or ``.parquet`` (``column``).

    ``limit`` keeps the first N (the seed generates for the first 200 test
    prompts). Errors name the file, and the row for an empty or non-text prompt.
    """
    path = Path(path)
    frame = read_table(path, "prompt file", (".txt", ".jsonl", ".csv", ".parquet"), csv_options={"dtype": str},
                       text_column=column)
    if column not in frame.columns:
        raise ConfigError(f"prompt file {path} has no {column!r} column; it has {list(frame.columns)}")
    prompts = frame[column].tolist()
    for row, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(f"prompt file {path}, row {row}: expected a non-empty prompt, got {prompt!r}")
    if not prompts:
        raise ConfigError(f"prompt file {path} holds no prompts")
    return prompts[:limit] if limit else prompts
