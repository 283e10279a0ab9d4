"""Prompt files: lines of text or a table's ``prompt`` column, read by demoscope.tables.read_table."""

import pandas as pd
import pytest

from demoscope.decoding.prompt_sets import read_prompts
from demoscope.errors import ConfigError


def test_prompts_from_lines_and_tables_stay_the_text_written(tmp_path):
    (tmp_path / "p.txt").write_text("Tax policy?\n\n 007 \n")
    assert read_prompts(tmp_path / "p.txt") == ["Tax policy?", " 007 "]
    (tmp_path / "p.jsonl").write_text('{"prompt": "007"}\n{"prompt": "1e5"}\n')  # not the numbers 7 and 100000.0
    assert read_prompts(tmp_path / "p.jsonl") == ["007", "1e5"]
    pd.DataFrame({"prompt": ["0123", "42"]}).to_csv(tmp_path / "p.csv", index=False)
    assert read_prompts(tmp_path / "p.csv", limit=1) == ["0123"]
    pd.DataFrame({"q": ["a", "b"]}).to_parquet(tmp_path / "p.parquet")
    assert read_prompts(tmp_path / "p.parquet", column="q") == ["a", "b"]


def test_prompt_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"prompt file .*nope\.txt does not exist"):
        read_prompts(tmp_path / "nope.txt")
    (tmp_path / "p.tsv").write_text("prompt\nx\n")
    with pytest.raises(ConfigError, match=r"p\.tsv: unsupported suffix '\.tsv' \(\.txt, \.jsonl, \.csv, \.parquet\)"):
        read_prompts(tmp_path / "p.tsv")
    (tmp_path / "p.jsonl").write_text('{"prompt": "x"\n')
    with pytest.raises(ConfigError, match=r"prompt file .*p\.jsonl cannot be read"):
        read_prompts(tmp_path / "p.jsonl")
    (tmp_path / "e.txt").write_text("\n \n")
    with pytest.raises(ConfigError, match=r"e\.txt holds no prompts"):
        read_prompts(tmp_path / "e.txt")
