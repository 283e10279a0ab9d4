"""Bad input gets a specific message naming the file and column; the rest still aggregates."""

import pandas as pd
import pytest

from demoscope.io import atomic_write
from demoscope.surveys import AggregateInputs, aggregate_files, load_subpopulations, reduce_file

from .conftest import BLM, atp_frame, write_atp


@pytest.fixture(scope="module")
def inputs():
    return AggregateInputs.build(load_subpopulations("22"))


def only_fatal(partial):
    fatal = [i for i in partial.issues if i.fatal]
    assert len(fatal) == 1
    return fatal[0]


def test_corrupt_file_is_reported_and_others_still_aggregate(tmp_path, inputs):
    good = write_atp(tmp_path / "good.sav")
    bad = tmp_path / "bad.sav"
    bad.write_bytes(b"$FL2 this is not really an SPSS file")
    out, acc = aggregate_files([bad, good], inputs)
    assert acc.failed_files == [str(bad)]
    issue = next(i for i in acc.issues if i.fatal)
    assert str(bad) in str(issue) and "cannot be read as a .sav survey file" in issue.message
    assert len(out) > 0 and set(out.source) == {"good.sav"}


def test_missing_file_is_named(tmp_path, inputs):
    issue = only_fatal(reduce_file(tmp_path / "nope.dta", inputs))
    assert issue.path.endswith("nope.dta") and "file not found" in issue.message


def test_missing_weight_column_names_the_expected_column(tmp_path, inputs):
    frame = atp_frame().rename(columns={"WEIGHT_W68": "WEIGHT_W67"})
    path = write_atp(tmp_path / "w68.sav", frame)
    issue = only_fatal(reduce_file(path, inputs))
    assert "no weight column matching" in issue.message and "w68" in issue.message.lower()
    assert "WEIGHT_W67" in issue.message  # the weight-like column that is there


def test_unrecognised_survey_points_to_spec(tmp_path, inputs):
    pd.DataFrame({"q": [1, 2], "w": [1.0, 1.0]}).to_csv(tmp_path / "x.csv", index=False)
    issue = only_fatal(reduce_file(tmp_path / "x.csv", inputs))
    assert "--spec" in issue.message


def test_answer_code_without_label_skips_that_question_only(tmp_path, inputs):
    frame = atp_frame()
    frame.loc[0, "BLM_W68"] = 7.0  # no value label for 7
    partial = reduce_file(write_atp(tmp_path / "w.sav", frame), inputs)
    assert not partial.failed
    issue = next(i for i in partial.issues if i.column == "BLM_W68")
    assert "answer code(s) 7 have no value label" in issue.message and "question skipped" in issue.message
    assert set(partial.questions.qkey) == {"GUN_W68"}


def test_group_with_no_respondents_is_reported_and_other_groups_aggregate(tmp_path, inputs):
    frame = atp_frame()
    frame["F_PARTY_FINAL"] = [3, 3, 3, 3, 1, 1, 1, 3.0]  # the Democrats become Independents: none left
    path = write_atp(tmp_path / "w.sav", frame)
    partial = reduce_file(path, inputs)
    assert not partial.failed, [str(i) for i in partial.issues]
    issue = next(i for i in partial.issues if "Democrat" in i.message)
    assert issue.column == "F_PARTY_FINAL" and "has no respondents" in issue.message and not issue.fatal
    assert issue.path == str(path)
    out, acc = aggregate_files([path], inputs)
    assert acc.failed_files == []
    assert "Democrat" not in set(out.group) and {"Republican", "Liberal"} <= set(out.group)
    # Republicans: r5 (w1.5, BLM 3, gun 2), r6 (w1, BLM 3, gun 2), r7 (w2, BLM missing, gun 1).
    blm = out[(out.qkey == "BLM_W68") & (out.group == "Republican")].iloc[0]
    assert blm.responses == pytest.approx([0.0, 0.0, 1.0])
    assert (blm.refusal_rate, blm.n, blm.weight_sum) == (0.0, 2, pytest.approx(2.5))
    assert blm.n_eff == pytest.approx(2.5**2 / (1.5**2 + 1.0))
    gun = out[(out.qkey == "GUN_W68") & (out.group == "Republican")].iloc[0]
    assert gun.responses == pytest.approx([2 / 4.5, 2.5 / 4.5])
    assert (gun.n, gun.weight_sum) == (3, pytest.approx(4.5))


def test_group_label_not_found_lists_the_labels(tmp_path, inputs):
    labels = {"F_PARTY_FINAL": {1.0: "GOP", 2.0: "Dem"}, "F_IDEO": {4.0: "Liberal"}, "BLM_W68": BLM,
              "GUN_W68": {1.0: "Yes", 2.0: "No", 99.0: "Refused"}}
    partial = reduce_file(write_atp(tmp_path / "w.sav", labels=labels), inputs)
    issue = next(i for i in partial.issues if "Democrat" in i.message)
    assert issue.column == "F_PARTY_FINAL" and "'GOP'" in issue.message


def test_non_numeric_answers_name_the_column(tmp_path):
    pd.DataFrame({"wt": [1.0, 1.0], "q1": ["yes", "no"], "region": [1, 2]}).to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "p.yaml").write_text(
        "name: p\nweight: '^wt$'\nquestions: {columns: [q1]}\nvalue_labels: {q1: {1: 'yes', 2: 'no', 9: Refused}}\n"
        "attributes: {CREGION: {columns: [region], groups: {South: {codes: [2]}}}}\n"
    )
    inputs = AggregateInputs.build(load_subpopulations("22"), spec_path=str(tmp_path / "p.yaml"))
    issue = only_fatal(reduce_file(tmp_path / "p.csv", inputs))
    assert issue.column == "q1" and "non-numeric value 'yes'" in issue.message


def test_negative_weights_are_rejected(tmp_path, inputs):
    frame = atp_frame()
    frame.loc[2, "WEIGHT_W68"] = -1.0
    issue = only_fatal(reduce_file(write_atp(tmp_path / "w.sav", frame), inputs))
    assert issue.column == "WEIGHT_W68" and "negative weights" in issue.message


def test_atomic_write_leaves_old_file_and_no_temp_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")

    def explode(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


@pytest.mark.parametrize("bad", [float("inf"), float("-inf")])
def test_infinite_weights_are_rejected_naming_the_weight_column(tmp_path, inputs, bad):
    frame = atp_frame()
    frame.loc[2, "WEIGHT_W68"] = bad
    issue = only_fatal(reduce_file(write_atp(tmp_path / "w.sav", frame), inputs))
    assert issue.column == "WEIGHT_W68" and issue.path.endswith("w.sav")
    assert "1 infinite weight" in issue.message and "finite" in issue.message


def test_file_whose_weights_are_all_missing_or_zero_fails_and_others_aggregate(tmp_path, inputs):
    frame = atp_frame()
    frame["WEIGHT_W68"] = [0.0, float("nan"), 0.0, 0.0, float("nan"), 0.0, 0.0, 0.0]
    empty = write_atp(tmp_path / "empty.sav", frame)
    issue = only_fatal(reduce_file(empty, inputs))
    assert issue.column == "WEIGHT_W68" and issue.path == str(empty)
    assert "all 8 weights are missing or zero" in issue.message
    good = write_atp(tmp_path / "good.sav")
    out, acc = aggregate_files([empty, good], inputs)
    assert acc.failed_files == [str(empty)] and set(out.source) == {"good.sav"}


def test_question_nobody_answered_is_reported_per_file_and_column(tmp_path, inputs):
    frame = atp_frame()
    frame["BLM_W68"] = float("nan")
    path = write_atp(tmp_path / "w.sav", frame)
    partial = reduce_file(path, inputs)
    assert not partial.failed
    issue = next(i for i in partial.issues if i.column == "BLM_W68")
    assert issue.path == str(path) and issue.message == "question BLM_W68: no respondent answered it; skipped"
    assert set(partial.questions.qkey) == {"GUN_W68"}


def test_pairs_without_respondents_name_their_questions_and_files(tmp_path, inputs):
    frame = atp_frame()
    frame.loc[frame.F_PARTY_FINAL == 1, "BLM_W68"] = float("nan")  # no Republican answered BLM
    out, acc = aggregate_files([write_atp(tmp_path / "w.sav", frame)], inputs)
    [issue] = [i for i in acc.issues if "had no respondents" in i.message]
    # Republicans (r5-r7) are also the only Conservatives (r5, r6): two pairs, one question.
    assert issue.message.startswith("2 (question, group) pairs had no respondents")
    assert "POLPARTY=Republican (1 questions)" in issue.message
    assert "BLM_W68 in w.sav (2 groups)" in issue.message
    assert ("BLM_W68", "Republican") not in set(zip(out.qkey, out.group))


def test_text_demographic_column_gets_one_message_saying_it_holds_text(tmp_path, inputs):
    frame = atp_frame()
    frame["F_RELIG"] = ["Protestant", "Jewish", "Muslim", "Protestant", "Hindu", "Jewish", "Atheist", "Protestant"]
    partial = reduce_file(write_atp(tmp_path / "w.sav", frame), inputs)
    assert not partial.failed
    about = [i for i in partial.issues if i.column == "F_RELIG" or "F_RELIG" in i.message]
    assert len(about) == 1, [str(i) for i in about]
    assert about[0].column == "F_RELIG" and "holds text, not coded answers" in about[0].message
    assert "'Protestant'" in about[0].message and "value_labels" in about[0].message
    assert not any("no value label matches" in i.message for i in partial.issues)


def test_text_demographic_column_of_a_csv_skips_its_groups_not_the_file(tmp_path):
    pd.DataFrame({"wt": [1.0, 2.0, 1.0], "q1": [1, 2, 1], "region": ["South", "Northeast", "South"]}).to_csv(
        tmp_path / "p.csv", index=False)
    (tmp_path / "p.yaml").write_text(
        "name: p\nweight: '^wt$'\nquestions: {columns: [q1]}\nvalue_labels: {q1: {1: 'yes', 2: 'no', 9: Refused}}\n"
        "attributes: {CREGION: {columns: [region], groups: {Northeast: {codes: [1]}, South: {codes: [2]}}}}\n"
    )
    inputs = AggregateInputs.build(load_subpopulations("22"), spec_path=str(tmp_path / "p.yaml"))
    partial = reduce_file(tmp_path / "p.csv", inputs)
    assert not partial.failed, [str(i) for i in partial.issues]
    [issue] = [i for i in partial.issues if i.column == "region"]
    assert "holds text, not coded answers" in issue.message and "'Northeast', 'South'" in issue.message
