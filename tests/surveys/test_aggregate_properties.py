"""Random ATP and GSS files: the library's distributions equal a plain reference.

Hypothesis writes small Pew ATP-style ``.sav`` waves and GSS-style ``.dta``
files with empty and tiny groups, missing and zero weights, refusals, answer
codes without a value label, questions asked of a subset or of nobody, and
SPSS user-missing / Stata extended-missing codes. :func:`reference_rows`
recomputes every (question, group) row with a per-question, per-group Python
loop written from ``reference/subpop.md`` §1; it shares no code with the
library (the group definitions in `random_surveys.py` are data copied from the shipped specs).

Rules of the reference (SubPOP §1.1, §1.2, and the library's documented
conventions where they deliberately differ):

- ATP options are the value labels in ascending code order; the last (99,
  "Refused") is the refusal. ``refusal_rate`` is its share of the group's
  weight; ``responses`` are renormalised over the other options.
- GSS options come from the shipped codebook; option k is code ``low + k``
  where ``low`` is the lowest non-negative *labelled* code (SubPOP takes the
  column's lowest *observed* code; the two agree whenever someone gives the
  lowest answer). GSS refusals are missing codes, so ``refusal_rate`` is 0.
- A missing answer (NaN, SPSS user-missing, Stata ``.d``/``.i``) drops the
  respondent from that question. A NaN weight counts as 0 and the respondent
  is not counted in ``n`` (SubPOP skips such GSS rows: the same shares); a
  zero weight is counted in ``n``.
- One answer code that maps to no option skips the whole question for that
  file, reported as an Issue (SubPOP skips only the groups that meet it).
- A question nobody in a file answered is skipped for that file, reported per
  file and column; it does not fix the question's options for later files.
- A file with no positive weight (all missing or zero, or no respondents) fails
  as a whole and contributes nothing, not even its zero-weight respondents' ``n``.
- A row exists only when the group's non-refusal weight is positive.
- Stata extended missing values are written for real: pyreadstat's
  ``write_dta`` takes ``missing_user_values`` (letters a-z) on integer columns.
- ``n_eff`` is Kish's ``(sum w)^2 / sum w^2`` over the group's answers,
  refusals included; ``weight_sum`` is ``sum w`` (library columns, not SubPOP's).
"""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path
from tempfile import TemporaryDirectory

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from demoscope.surveys import (
    AggregateInputs,
    CountAccumulator,
    aggregate_files,
    finalize,
    load_subpopulations,
    reduce_file,
)

from .random_surveys import (
    ATP_GROUPS,
    ATP_LABELS,
    Survey,
    atp_waves,
    gss_files,
    write_survey,
)

# --- the plain reference ------------------------------------------------------------------------


def is_missing(value, survey: Survey, qkey: str | None = None) -> bool:
    return value is None or isinstance(value, str) or (qkey is not None and value in survey.user_missing.get(qkey, []))


def reference_rows(surveys: list[Survey]) -> dict[tuple[str, str, str], dict]:
    """Every (qkey, attribute, group) row, one question and one group at a time.

    Files are taken in order; a question's options are those of the first file
    that could use it, and a later file whose options differ does not count.
    """
    contributors: dict[str, list[Survey]] = {}
    for survey in surveys:
        if file_fails(survey):
            continue
        for qkey in survey.answers:
            if qkey in skipped_questions(survey):
                continue
            first = contributors.setdefault(qkey, [survey])[0]
            if first is not survey and first.options[qkey] == survey.options[qkey]:
                contributors[qkey].append(survey)
    rows = {}
    for qkey, files in contributors.items():
        for attribute, group in dict.fromkeys(key for survey in files for key in survey.groups):
            totals = [0.0] * files[0].n_options[qkey]
            n, squares = 0, 0.0
            for survey in files:
                conditions = survey.groups.get((attribute, group), [])
                for i, answer in enumerate(survey.answers[qkey]):
                    if is_missing(answer, survey, qkey):
                        continue
                    member = any(
                        not is_missing(survey.demographics[column][i], survey)
                        and survey.demographics[column][i] in codes
                        for column, codes in conditions
                    )
                    if not member:
                        continue
                    weight = survey.weights[i]
                    if math.isnan(weight):
                        weight = 0.0
                    else:
                        n += 1
                    totals[survey.options[qkey][float(answer)]] += weight
                    squares += weight * weight
            total = sum(totals)
            substantive = total - totals[-1]
            if substantive <= 0:
                continue
            rows[(qkey, attribute, group)] = {
                "responses": [t / substantive for t in totals[:-1]],
                "refusal_rate": totals[-1] / total,
                "n": n,
                "n_eff": total * total / squares,
                "weight_sum": total,
            }
    return rows


def unlabelled_questions(survey: Survey) -> set[str]:
    return {
        q for q, answers in survey.answers.items()
        if any(float(a) not in survey.options[q] for a in answers if not is_missing(a, survey, q))
    }


def unanswered_questions(survey: Survey) -> set[str]:
    return {q for q, answers in survey.answers.items() if all(is_missing(a, survey, q) for a in answers)}


def skipped_questions(survey: Survey) -> set[str]:
    return unlabelled_questions(survey) | unanswered_questions(survey)


def no_positive_weight(survey: Survey) -> bool:
    return not any(w > 0 for w in survey.weights)  # NaN > 0 is False


def file_fails(survey: Survey) -> bool:
    return no_positive_weight(survey) or skipped_questions(survey) == set(survey.answers)


def empty_groups(survey: Survey) -> set[str]:
    n = len(survey.weights)
    return {
        group for (_, group), conditions in survey.groups.items()
        if not any(survey.demographics[c][i] in codes and not is_missing(survey.demographics[c][i], survey)
                   for i in range(n) for c, codes in conditions)
    }


# --- comparisons --------------------------------------------------------------------------------


def assert_matches_reference(out: pd.DataFrame, surveys: list[Survey]) -> None:
    expected = reference_rows(surveys)
    got = {(r.qkey, r.attribute, r.group): r for r in out.itertuples(index=False)}
    assert set(got) == set(expected)
    for key, want in expected.items():
        row = got[key]
        assert list(row.responses) == pytest.approx(want["responses"], rel=1e-9, abs=1e-12), key
        assert row.refusal_rate == pytest.approx(want["refusal_rate"], rel=1e-9, abs=1e-12), key
        assert row.n == want["n"], key
        assert row.n_eff == pytest.approx(want["n_eff"], rel=1e-9), key
        assert row.weight_sum == pytest.approx(want["weight_sum"], rel=1e-9), key
        assert len(row.options) == len(want["responses"]) + 1, key


def assert_issues_name_what_was_skipped(partial, survey: Survey) -> None:
    assert partial.failed == file_fails(survey), [str(i) for i in partial.issues]
    unformed = {m.group(1) for i in partial.issues
                if (m := re.search(r"no value label matches .* for group \w+='([^']+)'", i.message))}
    assert unformed == ({key[1] for key in ATP_GROUPS if key not in survey.groups} if survey.name.endswith(".sav")
                        else set())
    if no_positive_weight(survey):  # the weights are checked first: the file stops there
        [fatal] = [i for i in partial.issues if i.fatal]
        n = len(survey.weights)
        assert fatal.column == ("wtssnrps" if survey.name.endswith(".dta") else f"WEIGHT_{survey.name[4:-4]}")
        assert ((fatal.message == "holds no respondents") if n == 0
                else (f"all {n} weights are missing or zero" in fatal.message))
        return
    reported = {i.column for i in partial.issues if "have no value label" in i.message}
    assert reported == unlabelled_questions(survey)
    unanswered = {i.column for i in partial.issues
                  if i.message == f"question {i.column}: no respondent answered it; skipped"}
    assert unanswered == unanswered_questions(survey)
    no_one = {g for g in empty_groups(survey) if any(f"={g!r} has no respondents" in i.message for i in partial.issues)}
    assert no_one == empty_groups(survey)
    if not partial.failed:
        assert set(partial.questions.qkey) == set(survey.answers) - skipped_questions(survey)


@functools.cache
def library_inputs() -> AggregateInputs:
    # Not a fixture: Hypothesis prints a failing test's arguments, and these hold whole codebooks.
    return AggregateInputs.build(load_subpopulations("22"))


def check_files(atp: Survey, gss: Survey) -> None:
    inputs = library_inputs()
    with TemporaryDirectory() as tmp:
        paths = [write_survey(atp, Path(tmp)), write_survey(gss, Path(tmp))]
        for survey, path in zip((atp, gss), paths):
            assert_issues_name_what_was_skipped(reduce_file(path, inputs), survey)
        out, acc = aggregate_files(paths, inputs)
    target(float(len(out)))  # steer towards files with many rows to compare, not only degenerate ones
    assert_matches_reference(out, [atp, gss])


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=15, **SETTINGS)
@given(atp=atp_waves(), gss=gss_files())
def test_distributions_equal_plain_reference(atp, gss):
    check_files(atp, gss)


@pytest.mark.slow
@settings(max_examples=200, **SETTINGS)
@given(atp=atp_waves(), gss=gss_files())
def test_distributions_equal_plain_reference_many(atp, gss):
    check_files(atp, gss)


@settings(max_examples=10, **SETTINGS)
@given(waves=st.lists(atp_waves(waves=st.just(170)), min_size=2, max_size=3))
def test_waves_sharing_questions_sum_per_file_partials(waves):
    """Files of one wave (same question keys), each reduced alone, then summed and finalised as the Ray job does.

    Where a file's options for a question differ from the first file's, its answers to it are left out.
    """
    inputs = library_inputs()
    acc = CountAccumulator(consolidate_every=2)
    with TemporaryDirectory() as tmp:
        for i, survey in enumerate(waves):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            acc.add(reduce_file(write_survey(survey, folder), inputs))
    out, _ = finalize(acc.counts(), acc.questions(), inputs.subpopulations)
    target(float(len(out)))
    assert_matches_reference(out, waves)


@pytest.mark.ray
def test_cli_writes_the_reference_rows_and_exit_code(local_ray, tmp_path):
    """``demoscope aggregate`` on a wave with an empty group (no Hindu respondents) exits 0 and writes the rest."""
    from demoscope.pipelines.aggregate import main

    survey = Survey(
        "ATP W170.sav",
        weights=[1.0, 2.0, math.nan, 0.0, 1.5, 0.5, 1.0, 3.0, 1.0],
        demographics={
            "F_PARTY_FINAL": [1, 2, 2, 1, 99, None, 1, 2, 4],
            "F_IDEO": [2, 3, 4, 4, 5, 1, 99, 2, 3],
            "F_RELIG": [1, 1, 5, 9, 6, 12, None, 1, 99],  # nobody is Hindu
        },
        answers={"A_W170": [1, 2, 99, 1, None, 3, 1, 2, 99], "B_W170": [None, 98, 1, 2, 2, 1, None, 99, 1]},
        options={"A_W170": {1.0: 0, 2.0: 1, 3.0: 2, 99.0: 3}, "B_W170": {1.0: 0, 2.0: 1, 98.0: 2, 99.0: 3}},
        n_options={"A_W170": 4, "B_W170": 4},
        groups=ATP_GROUPS,
        user_missing={"B_W170": [98]},
        labels={
            "A_W170": {1.0: "Yes", 2.0: "No", 3.0: "Unsure", 99.0: "Refused"},
            "B_W170": {1.0: "Agree", 2.0: "Disagree", 98.0: "Don't know", 99.0: "Refused"},
        } | ATP_LABELS,
    )
    assert "Hindu" in empty_groups(survey)
    path = write_survey(survey, tmp_path)
    out = tmp_path / "agg"
    code = main(["--input", str(path), "--out", str(out), "progress=false"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_files"] == [] and any("'Hindu' has no respondents" in i for i in summary["issues"])
    frame = pd.read_parquet(out / "distributions.parquet")
    assert len(frame) > 0 and "Hindu" not in set(frame.group)
    assert_matches_reference(frame, [survey])
    # A second, unreadable file: the good one is still written, and the job exits 1.
    (tmp_path / "bad.sav").write_bytes(b"$FL2 not SPSS")
    assert main(["--input", str(path), "--input", str(tmp_path / "bad.sav"), "--out", str(tmp_path / "agg2"),
                 "progress=false"]) == 1
    assert_matches_reference(pd.read_parquet(tmp_path / "agg2" / "distributions.parquet"), [survey])
