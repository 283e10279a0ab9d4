"""The one table reader: formats by suffix round-trip text, and every failure is a ConfigError naming the file."""

import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demoscope.errors import ConfigError
from demoscope.tables import read_table

AS_TEXT = {"dtype": str, "keep_default_na": False}  # what read_preferences asks of a CSV

# Any text a file can hold, but surrogates (not UTF-8), NUL (pandas' C parser stops at it) and a carriage
# return (pandas' to_csv leaves it unquoted, so no CSV reader could tell it from a line end).
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00\r"), max_size=12)


def write(frame: pd.DataFrame, path) -> None:
    """How a user writes each format with pandas."""
    {".csv": lambda: frame.to_csv(path, index=False), ".parquet": lambda: frame.to_parquet(path, index=False),
     ".jsonl": lambda: frame.to_json(path, orient="records", lines=True, force_ascii=False)}[path.suffix]()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(TEXT, TEXT), max_size=6), suffix=st.sampled_from([".csv", ".jsonl", ".parquet"]))
def test_string_columns_read_back_equal_from_every_format(tmp_path, rows, suffix):
    # Two columns, so no CSV line is blank (pandas skips blank lines); "007", "", "nan", "1e5" stay as written.
    frame = pd.DataFrame(rows, columns=["prompt", "answer"], dtype=object)
    path = tmp_path / f"t{suffix}"
    write(frame, path)
    got = read_table(path, "test file", csv_options=AS_TEXT)
    assert list(got.columns) == ["prompt", "answer"] or (not rows and suffix == ".jsonl")
    assert {c: got[c].tolist() for c in got.columns} == {c: frame[c].tolist() for c in got.columns}
    assert len(got) == len(rows)


def test_text_that_looks_like_numbers_stays_text_in_json_lines(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "007", "n": 1}\n\n{"prompt": "1e5", "n": 2}\n')  # a blank line is skipped
    frame = read_table(path, "prompt file")
    assert frame.prompt.tolist() == ["007", "1e5"] and frame.n.tolist() == [1, 2]


def test_csv_options_are_the_callers(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("qkey,share\n0123,0.5\n,0.25\n")
    plain = read_table(path, "test file")
    assert plain.qkey.tolist()[0] == 123 and pd.isna(plain.qkey.tolist()[1]) and plain.share.tolist() == [0.5, 0.25]
    assert read_table(path, "test file", csv_options=AS_TEXT).qkey.tolist() == ["0123", ""]


def test_text_lines_and_json_lists(tmp_path):
    (tmp_path / "p.txt").write_text("first\n\n  \nsecond line\n")
    assert read_table(tmp_path / "p.txt", "prompt file", (".txt",), text_column="prompt").prompt.tolist() == [
        "first", "second line"]
    (tmp_path / "p.json").write_text(json.dumps([{"a": "x"}, {"a": "y"}]))
    assert read_table(tmp_path / "p.json", "test file", (".json",)).a.tolist() == ["x", "y"]
    (tmp_path / "p.JSON").write_text(json.dumps({"a": "x"}))
    with pytest.raises(ConfigError, match=r"p\.JSON: expected a JSON list of records"):
        read_table(tmp_path / "p.JSON", "test file", (".json",))  # the suffix is matched in any case


def test_a_missing_file_is_named_with_the_callers_hint(tmp_path):
    with pytest.raises(ConfigError) as error:
        read_table(tmp_path / "nope.csv", "prepared split", hint=" (write it with `demoscope prepare`)")
    path = tmp_path / "nope.csv"
    assert str(error.value) == f"prepared split {path} does not exist (write it with `demoscope prepare`)"


def test_an_unknown_suffix_names_the_file_and_the_accepted_ones(tmp_path):
    path = tmp_path / "table.xlsx"
    path.write_text("a,b\n")
    with pytest.raises(ConfigError) as error:
        read_table(path, "labelled text file", (".csv", ".jsonl", ".parquet"))
    assert str(error.value) == f"labelled text file {path}: unsupported suffix '.xlsx' (.csv, .jsonl, .parquet)"
    (tmp_path / "t.txt").write_text("a\n")
    with pytest.raises(ConfigError, match=r"t\.txt: unsupported suffix '\.txt' \(\.csv, \.parquet\)"):
        read_table(tmp_path / "t.txt", "test file", (".csv", ".parquet"))  # readable, but not by this caller


@pytest.mark.parametrize("name, content, reason", [
    ("bad.parquet", b"not a parquet file", "Parquet magic bytes not found"),
    ("bad.jsonl", b'{"prompt": "a"}\n{"prompt": \n', "Expecting value"),
    ("bad.json", b"[{]", "Expecting property name"),
    ("bad.csv", b"a,b\n1,2\n1,2,3\n", "Expected 2 fields in line 3, saw 3"),
    ("latin.csv", "a\ncaf\u00e9\n".encode("latin-1"), "can't decode byte"),
    ("latin.txt", "caf\u00e9\n".encode("latin-1"), "can't decode byte"),
])
def test_a_file_that_does_not_parse_is_named_without_the_parsers_traceback(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        read_table(path, "test file", (".csv", ".jsonl", ".json", ".parquet", ".txt"))
    assert str(error.value).startswith(f"test file {path} cannot be read: ") and reason in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__  # `from None`: no library traceback


def test_a_folder_in_place_of_a_file_is_named(tmp_path):
    (tmp_path / "split.csv").mkdir()
    with pytest.raises(ConfigError, match=r"test file .*split\.csv cannot be read: .*Is a directory"):
        read_table(tmp_path / "split.csv", "test file")


def test_a_json_line_that_is_not_an_object_is_named_by_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n\n["b"]\n')
    with pytest.raises(ConfigError, match=r"p\.jsonl, line 3: expected a JSON object, got list"):
        read_table(path, "prompt file")
    (tmp_path / "p.json").write_text('[{"a": 1}, 2]')
    with pytest.raises(ConfigError, match=r"p\.json, record 1: expected a JSON object, got int"):
        read_table(tmp_path / "p.json", "test file", (".json",))


def test_a_suffix_the_reader_does_not_know_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError, match=r"not \.xlsx"):
        read_table(tmp_path / "t.xlsx", "test file", (".csv", ".xlsx"))
