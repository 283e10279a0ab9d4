"""Prompt sets for generation jobs: one prompt per line, or a table with a ``prompt`` column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from demoscope.errors import ConfigError


def read_prompts(path: str | Path, limit: int | None = None, column: str = "prompt") -> list[str]:
    """Prompts from ``.txt`` (one per non-empty line), ``.jsonl``, ``.csv`` or ``.parquet`` (``column``).

    ``limit`` keeps the first N (the seed generates for the first 200 test
    prompts). Errors name the file, and the row for an empty or non-text prompt.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"prompt file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            prompts = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        elif suffix in (".jsonl", ".csv", ".parquet"):
            frame = {".jsonl": lambda: pd.read_json(path, lines=True), ".csv": lambda: pd.read_csv(path, dtype=str),
                     ".parquet": lambda: pd.read_parquet(path)}[suffix]()
            if column not in frame.columns:
                raise ConfigError(f"prompt file {path} has no {column!r} column; it has {list(frame.columns)}")
            prompts = frame[column].tolist()
        else:
            raise ConfigError(f"prompt file {path}: unsupported suffix {suffix!r} (.txt, .jsonl, .csv, .parquet)")
    except ConfigError:
        raise
    except (ValueError, OSError) as error:
        raise ConfigError(f"prompt file {path} cannot be read: {error}") from None
    for row, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(f"prompt file {path}, row {row}: expected a non-empty prompt, got {prompt!r}")
    if not prompts:
        raise ConfigError(f"prompt file {path} holds no prompts")
    return prompts[:limit] if limit else prompts
