"""Every rule of demoscope.surveys.validation: a bad row is refused with file, row, line, qkey, group, column and
what was expected; a good file passes; the vectorised checks agree with a plain per-row reference."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demoscope.errors import SurveyFormatError
from demoscope.pipelines.cli import main as cli_main
from demoscope.surveys import read_distributions, write_distributions
from demoscope.surveys.finetuning import build_finetuning_frame, read_split, screen_distributions
from demoscope.surveys.output import to_subpop_csv_frame
from demoscope.surveys.validation import MAX_SHOWN, SUM_TOLERANCE, check_distributions, check_split

GROUPS = [("CREGION", "Northeast"), ("CREGION", "South"), ("POLPARTY", "Democrat")]


def distributions(n_questions: int = 3) -> pd.DataFrame:
    """Well-formed distributions: ``n_questions`` x 3 groups, 3 answers + 'Refused', rows in (question, group) order."""
    rows = []
    for q in range(n_questions):
        for i, (attribute, group) in enumerate(GROUPS):
            raw = np.array([1.0, 2.0, 3.0]) + i + q
            rows.append({"qkey": f"Q{q}_W26", "attribute": attribute, "group": group, "question": f"Question {q}?",
                         "options": ["Yes", "Maybe", "No", "Refused"], "responses": (raw / raw.sum()).tolist(),
                         "refusal_rate": 0.05, "ordinal": [1.0, 2.0, 3.0]})
    return pd.DataFrame(rows)


def refused(frame: pd.DataFrame, path) -> str:
    """Write ``frame`` (CSV with list literals or Parquet, by suffix), read it back and return the check's message."""
    if path.suffix == ".csv":
        to_subpop_csv_frame(frame).to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    with pytest.raises(SurveyFormatError) as error:
        check_distributions(read_distributions(path), str(path))
    return str(error.value)


def set_cell(frame: pd.DataFrame, row: int, column: str, value) -> pd.DataFrame:
    frame = frame.copy()
    frame[column] = frame[column].astype(object)
    frame.at[row, column] = value
    return frame


def test_good_distributions_pass_as_csv_and_parquet(tmp_path):
    write_distributions(distributions(), tmp_path)
    for name in ("distributions.csv", "distributions.parquet"):
        check_distributions(read_distributions(tmp_path / name), name)


# Row 4 is ('Q1_W26', 'South'): CSV line 6 (the header is line 1).
@pytest.mark.parametrize("column, value, expected, found", [
    ("responses", [-0.1, 0.6, 0.5], "expected finite shares >= 0", "got [-0.1, 0.6, 0.5]"),
    ("responses", [0.5, 0.3, 0.3], "expected shares summing to 1 (within 1e-06", "sum 1.1"),
    ("options", ["Yes", "No", "Refused"], "expected one option more than responses (the last option is the refusal)",
     "3 options, 3 responses"),
    ("refusal_rate", -0.2, "expected a share in [0, 1]", "got -0.2"),
    ("refusal_rate", 1.5, "expected a share in [0, 1]", "got 1.5"),
    ("refusal_rate", None, "expected a share in [0, 1]", "got nothing (empty cell)"),
    ("ordinal", [1.0, 2.0, 3.0, 4.0], "expected 1 to len(responses) positions", "4 positions for 3 answer options"),
    ("ordinal", [], "expected 1 to len(responses) positions", "0 positions for 3 answer options"),
    ("ordinal", [-1.0, -2.0, -3.0], "expected at least one position >= 0", "got [-1.0, -2.0, -3.0]"),
    ("options", [1, 2, 3, 4], "expected a list of option labels (text)", "got [1, 2, 3, 4]"),
    ("group", "", "expected non-empty text", "got nothing (empty cell)"),
])
def test_bad_row_names_file_row_line_question_group_column_and_expectation(tmp_path, column, value, expected, found):
    path = tmp_path / "distributions.csv"
    message = refused(set_cell(distributions(), 4, column, value), path)
    group = "nothing (empty cell)" if column == "group" else "'South'"
    assert message.startswith(f"{path}, column {column!r}: {expected}")
    assert f"1 of 9 row(s) fail: row 4 (line 6, qkey 'Q1_W26', group {group}): {found}" in message
    assert "\n" not in message


def test_non_finite_share_in_parquet_is_refused(tmp_path):
    path = tmp_path / "distributions.parquet"
    message = refused(set_cell(distributions(), 2, "responses", [math.nan, 0.5, 0.5]), path)
    assert message == (f"{path}, column 'responses': expected finite shares >= 0; 1 of 9 row(s) fail: "
                       "row 2 (qkey 'Q0_W26', group 'Democrat'): got [nan, 0.5, 0.5]")


def test_duplicate_question_group_names_both_rows(tmp_path):
    frame = distributions()
    frame = pd.concat([frame, frame.iloc[[1]]], ignore_index=True)
    message = refused(frame, tmp_path / "distributions.csv")
    assert "column 'qkey/attribute/group': expected one row per (qkey, attribute, group)" in message
    assert "row 9 (line 11, qkey 'Q0_W26', group 'South'): repeats row 1" in message


def test_missing_column_lists_what_a_distributions_file_has(tmp_path):
    message = refused(distributions().drop(columns=["refusal_rate"]), tmp_path / "distributions.csv")
    assert "lacks column(s) refusal_rate; a distributions file has qkey, attribute, group, question" in message


def test_unparsable_list_literal_names_row_and_line(tmp_path):
    path = tmp_path / "distributions.csv"
    write_distributions(distributions(), tmp_path)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace('"[1.0, 2.0, 3.0]"', '"[1.0, 2.0"')  # row 2
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SurveyFormatError) as error:
        read_distributions(path)
    assert str(error.value) == (f"{path}, column 'ordinal': expected a list written as a Python literal, like "
                                "[0.25, 0.75]; 1 of 9 row(s) fail: row 2 (line 4, qkey 'Q0_W26', group 'Democrat'): "
                                "got '[1.0, 2.0'")


def test_many_bad_rows_show_five_and_the_count(tmp_path):
    frame = distributions(4)
    frame["refusal_rate"] = [2.0] * 7 + [0.1] * 5
    message = refused(frame, tmp_path / "distributions.csv")
    assert "7 of 12 row(s) fail" in message and message.count("): got 2.0") == MAX_SHOWN
    assert message.endswith("; and 2 more")


def test_shares_off_by_round_off_pass_but_not_beyond_the_tolerance():
    frame = distributions(1)
    frame.at[0, "responses"] = [0.1, 0.2, 0.7 + SUM_TOLERANCE / 2]
    check_distributions(frame, "d")
    frame.at[0, "responses"] = [0.1, 0.2, 0.7 + 3 * SUM_TOLERANCE]
    with pytest.raises(SurveyFormatError, match="shares summing to 1"):
        check_distributions(frame, "d")


def test_fewer_ordinal_positions_than_answers_is_allowed_as_in_opinionqa():
    frame = distributions(1)
    frame["ordinal"] = [[1.0, 2.0]] * len(frame)  # the third answer ("No" here, "Not sure" there) is not scored
    check_distributions(frame, "d")


def test_screen_refuses_bad_rows_but_skips_wide_questions_with_a_note():
    frame = distributions(2)
    wide = frame[frame.qkey == "Q1_W26"].assign(
        qkey="WIDE", options=[[f"o{i}" for i in range(11)] + ["Refused"]] * 3, responses=[[1 / 11] * 11] * 3)
    kept, skipped = screen_distributions(pd.concat([frame, wide], ignore_index=True))
    assert set(kept.qkey) == {"Q0_W26", "Q1_W26"} and skipped[0].startswith("question 'WIDE' has 12 options")
    with pytest.raises(SurveyFormatError, match="row 1 .*sum 2"):
        screen_distributions(set_cell(frame, 1, "responses", [1.0, 0.5, 0.5]))


# Prepared splits


def split_frame(n_questions: int = 3) -> pd.DataFrame:
    return build_finetuning_frame(distributions(n_questions), "QA", shuffle=False)


def write_split(frame: pd.DataFrame, path) -> None:
    from demoscope.pipelines.prepare import write_split as prepare_write_split

    prepare_write_split(frame, path.with_suffix(""))


def split_refused(frame: pd.DataFrame, path) -> str:
    write_split(frame, path)
    with pytest.raises(SurveyFormatError) as error:
        read_split(path)
    return str(error.value)


def test_prepare_splits_pass_as_csv_with_multiline_prompts_and_parquet(tmp_path):
    frame = split_frame()
    assert frame.input_prompt.str.contains("\n").all()
    write_split(frame, tmp_path / "s.csv")
    csv, parquet = read_split(tmp_path / "s.csv"), read_split(tmp_path / "s.parquet")
    assert csv.input_prompt.tolist() == parquet.input_prompt.tolist() == frame.input_prompt.tolist()
    assert csv.output_dist.tolist() == parquet.output_dist.tolist()


@pytest.mark.parametrize("column, value, expected, found", [
    ("output_dist", [0.5, 0.3, 0.3, 0.05],
     "responses summing to 1 (within 1e-06) followed by a refusal share in [0, 1]",
     "responses sum 1.1, refusal 0.05"),
    ("output_dist", [1 / 6, 2 / 6, 3 / 6, 1.5], "followed by a refusal share in [0, 1]",
     "responses sum 1, refusal 1.5"),
    ("output_dist", [1.0], "responses then the refusal share (at least 2 entries)", "1 entries"),
    ("output_dist", [0.5, -0.5, 1.0, 0.1], "finite shares >= 0", "got [0.5, -0.5, 1.0, 0.1]"),
    ("ordinal", [1.0, 2.0, 3.0, 4.0], "1 to len(output_dist) - 1 positions", "4 positions for 3 answer options"),
])
def test_bad_split_row_names_its_csv_line_across_multiline_prompts(tmp_path, column, value, expected, found):
    frame = split_frame()
    path = tmp_path / "opnqa_QA_test.csv"
    message = split_refused(set_cell(frame, 4, column, value), path)
    line = 2 + sum(prompt.count("\n") + 1 for prompt in frame.input_prompt[:4])  # header is line 1; rows span lines
    row = frame.iloc[4]
    assert message.startswith(f"{path}, column {column!r}: expected ") and expected in message
    assert f"row 4 (line {line}, qkey {row.qkey!r}, group {row.group!r}): {found}" in message


def test_split_duplicates_and_missing_columns(tmp_path):
    frame = split_frame()
    message = split_refused(pd.concat([frame, frame.iloc[[0]]], ignore_index=True), tmp_path / "a.parquet")
    assert "expected one row per (qkey, attribute, group, input_prompt)" in message and "repeats row 0" in message
    frame.drop(columns=["ordinal"]).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(SurveyFormatError) as error:
        read_split(tmp_path / "b.parquet")
    message = str(error.value)
    assert "lacks column(s) ordinal; a prepared split file has qkey, input_prompt" in message


def test_all_steering_rows_are_not_duplicates():
    check_split(build_finetuning_frame(distributions(), "ALL"), "all")


def test_seventy_thousand_rows_pass_and_one_bad_row_among_them_is_named():
    frame = pd.concat([distributions(1)] * 24000, ignore_index=True)
    frame["qkey"] = [f"Q{i // 3}" for i in range(len(frame))]
    check_distributions(frame, "big")  # about 0.2 s here: vectorised, no per-row Python
    frame.at[41234, "refusal_rate"] = 1.5
    with pytest.raises(SurveyFormatError, match=r"row 41234 .*qkey 'Q13744'"):
        check_distributions(frame, "big")


# The vectorised checks against a plain per-row reference


def reference_row_ok(responses, refusal, n_options, ordinal) -> bool:
    """The rules for one distribution row, written out plainly."""
    if not all(math.isfinite(x) and x >= 0 for x in responses):
        return False
    if abs(sum(responses) - 1) > SUM_TOLERANCE:
        return False
    if not (math.isfinite(refusal) and 0 <= refusal <= 1) or n_options != len(responses) + 1:
        return False
    return 1 <= len(ordinal) <= len(responses) and all(math.isfinite(v) for v in ordinal) and max(ordinal) >= 0


share = st.one_of(st.floats(min_value=-0.2, max_value=1.2), st.just(math.nan))
row = st.fixed_dictionaries({
    "weights": st.lists(st.floats(min_value=0.01, max_value=5), min_size=1, max_size=5),
    "normalise": st.booleans(), "noise": st.lists(share, max_size=5),
    "refusal": st.one_of(st.floats(min_value=0, max_value=1), share),
    "extra_options": st.sampled_from([1, 1, 1, 0, 2]),
    "ordinal": st.lists(st.sampled_from([-1.0, 1.0, 2.0, 3.0]), max_size=6),
})


@settings(max_examples=150, deadline=None)
@given(st.lists(row, min_size=1, max_size=8))
def test_check_refuses_exactly_when_a_plain_reference_finds_a_bad_row(rows):
    records, ok = [], []
    for i, r in enumerate(rows):
        responses = list(np.asarray(r["weights"]) / sum(r["weights"])) if r["normalise"] else list(r["noise"])
        n_options = len(responses) + r["extra_options"]
        records.append({"qkey": f"Q{i}", "attribute": "CREGION", "group": "South", "question": "?",
                        "options": [f"o{j}" for j in range(n_options)], "responses": [float(x) for x in responses],
                        "refusal_rate": r["refusal"], "ordinal": r["ordinal"]})
        ok.append(reference_row_ok(responses, r["refusal"], n_options, r["ordinal"]))
    frame = pd.DataFrame(records)
    if all(ok):
        check_distributions(frame, "d")
    else:
        with pytest.raises(SurveyFormatError):
            check_distributions(frame, "d")


# The CLI: bad input exits 2 in seconds, before anything is written


def test_prepare_on_a_bad_distributions_file_exits_2_in_seconds_with_one_line(tmp_path, capsys):
    frame = set_cell(distributions(), 4, "ordinal", [1.0, 2.0, 3.0, 4.0])
    write_distributions(frame, tmp_path)
    code = cli_main(["prepare", "--distributions", str(tmp_path / "distributions.csv"),
                     "--out", str(tmp_path / "prep")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"demoscope prepare: error: {tmp_path / 'distributions.csv'}, column 'ordinal': expected 1 to "
                   "len(responses) positions, one per scored option (trailing options may go unscored); 1 of 9 row(s) "
                   "fail: row 4 (line 6, qkey 'Q1_W26', group 'South'): 4 positions for 3 answer options")
    assert not (tmp_path / "prep").exists()


def test_prepare_leaves_out_excluded_bad_questions(tmp_path):
    write_distributions(set_cell(distributions(), 4, "refusal_rate", 7.0), tmp_path)
    argv = ["prepare", "--distributions", str(tmp_path / "distributions.parquet"), "--out", str(tmp_path / "prep"),
            "--exclude-question", "Q1_W26", "--steering", "QA"]
    assert cli_main(argv) == 0


def test_lists_written_from_numpy_2_scalars_are_read_as_their_numbers(tmp_path):
    """``str([np.float64(0.25)])`` is ``'[np.float64(0.25)]'`` under NumPy 2: such CSVs come from users' own scripts."""
    frame = distributions()
    frame["responses"] = [str([np.float64(x) for x in r]) for r in frame["responses"]]
    frame["ordinal"] = [str([np.int64(int(x)) for x in o]) for o in frame["ordinal"]]
    frame["options"] = frame["options"].map(str)
    frame.to_csv(tmp_path / "numpy2.csv")  # with pandas' default index column, as a quick script writes it
    from demoscope.surveys import read_distributions

    read = read_distributions(tmp_path / "numpy2.csv")
    check_distributions(read, "numpy2.csv")
    assert read["responses"].tolist() == distributions()["responses"].tolist()
    assert read["ordinal"].tolist() == [[1, 2, 3]] * len(read)


def test_split_and_distributions_files_that_cannot_be_read_are_config_errors_naming_the_file(tmp_path):
    from demoscope.errors import ConfigError

    with pytest.raises(ConfigError,
                       match=r"prepared split .*none\.csv does not exist \(write it with `demoscope prepare`"):
        read_split(tmp_path / "none.csv")
    (tmp_path / "s.csv").write_text("qkey,input_prompt\nQ1,a\nQ2,b,c\n")
    with pytest.raises(ConfigError, match=r"prepared split .*s\.csv cannot be read: .*Expected 2 fields in line 3"):
        read_split(tmp_path / "s.csv")
    (tmp_path / "s.tsv").write_text("qkey\tinput_prompt\n")
    with pytest.raises(ConfigError, match=r"s\.tsv: unsupported suffix '\.tsv' \(\.parquet, \.csv\)"):
        read_split(tmp_path / "s.tsv")
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    with pytest.raises(ConfigError, match=r"distributions file .*d\.parquet cannot be read: "):
        read_distributions(tmp_path / "d.parquet")


def test_csv_keys_stay_text_in_splits_and_distributions(tmp_path):
    frame = distributions(1).assign(qkey="0123")
    write_distributions(frame, tmp_path)
    assert set(read_distributions(tmp_path / "distributions.csv").qkey) == {"0123"}
    split = build_finetuning_frame(frame, "QA", shuffle=False)
    write_split(split, tmp_path / "s.csv")
    assert set(read_split(tmp_path / "s.csv").qkey) == {"0123"}
