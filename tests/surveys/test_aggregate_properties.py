"""Random ATP and GSS files: the library's distributions equal a plain reference.

Hypothesis writes small Pew ATP-style ``.sav`` waves and GSS-style ``.dta``
files with empty and tiny groups, missing and zero weights, refusals, answer
codes without a value label, questions asked of a subset or of nobody, and
SPSS user-missing / Stata extended-missing codes. :func:`reference_rows`
recomputes every (question, group) row with a per-question, per-group Python
loop written from ``reference/subpop.md`` §1; it shares no code with the
library (the group definitions below are data copied from the shipped specs).

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
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pandas as pd
import pyreadstat
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

# --- group definitions, as data (from specs/atp.yaml and specs/gss.yaml, the 22-group table) ---

ATP_DEMOGRAPHICS = {
    "F_PARTY_FINAL": {1: "Republican", 2: "Democrat", 3: "Independent", 4: "Something else", 99: "Refused"},
    "F_IDEO": {1: "Very conservative", 2: "Conservative", 3: "Moderate", 4: "Liberal", 5: "Very liberal",
               99: "Refused"},
    "F_RELIG": {1: "Protestant", 2: "Roman Catholic", 5: "Jewish", 6: "Muslim", 8: "Hindu",
                9: "Atheist (do not believe in God)", 12: "Nothing in particular", 99: "Refused"},
}
ATP_LABELS = {c: {float(k): v for k, v in labels.items()} for c, labels in ATP_DEMOGRAPHICS.items()}
ATP_GROUPS = {  # (attribute, group) -> [(column, codes)]
    ("POLPARTY", "Republican"): [("F_PARTY_FINAL", {1})],
    ("POLPARTY", "Democrat"): [("F_PARTY_FINAL", {2})],
    ("POLIDEOLOGY", "Conservative"): [("F_IDEO", {2})],  # not "Very conservative"
    ("POLIDEOLOGY", "Moderate"): [("F_IDEO", {3})],
    ("POLIDEOLOGY", "Liberal"): [("F_IDEO", {4})],
    ("RELIG", "Protestant"): [("F_RELIG", {1})],
    ("RELIG", "Jewish"): [("F_RELIG", {5})],
    ("RELIG", "Muslim"): [("F_RELIG", {6})],
    ("RELIG", "Hindu"): [("F_RELIG", {8})],
    ("RELIG", "Atheist"): [("F_RELIG", {9})],
}
GSS_DEMOGRAPHICS = {
    "partyid": list(range(8)), "polviews": list(range(1, 8)), "relig": list(range(1, 14)),
    "raceacs1": [0, 1], "raceacs2": [0, 1], "raceacs4": [0, 1], "raceacs7": [0, 1], "raceacs16": [0, 1],
}
GSS_GROUPS = {
    ("POLIDEOLOGY", "Liberal"): [("polviews", {1, 2, 3})],
    ("POLIDEOLOGY", "Conservative"): [("polviews", {5, 6, 7})],
    ("POLIDEOLOGY", "Moderate"): [("polviews", {4})],
    ("POLPARTY", "Democrat"): [("partyid", {0, 1})],
    ("POLPARTY", "Republican"): [("partyid", {5, 6})],
    ("RACE", "Black"): [("raceacs2", {1})],
    ("RACE", "White"): [("raceacs1", {1})],
    ("RACE", "Asian"): [("raceacs4", {1}), ("raceacs7", {1})],  # a union of dummies: overlaps
    ("RACE", "Hispanic"): [("raceacs16", {1})],
    ("RELIG", "Protestant"): [("relig", {1})],
    ("RELIG", "Jewish"): [("relig", {3})],
    ("RELIG", "Hindu"): [("relig", {7})],
    ("RELIG", "Atheist"): [("relig", {4})],
    ("RELIG", "Muslim"): [("relig", {9})],
}
# GSS questions of the shipped codebook and their number of substantive options.
GSS_QUESTIONS = {"prayer": 2, "natspac": 3, "fechld": 4, "marital": 5, "pray": 6}

MISSING = None  # a plain missing answer; "d" / "i" are Stata extended missing, 98 is SPSS user-missing in ATP


@dataclass
class Survey:
    """One generated file: what the test wrote, in plain Python values."""

    name: str
    weights: list[float]
    demographics: dict[str, list]  # column -> values (None or a missing letter = missing)
    answers: dict[str, list]  # qkey -> values
    options: dict[str, dict[float, int]]  # qkey -> answer code -> option slot
    n_options: dict[str, int]  # qkey -> number of options, refusal slot included
    groups: dict[tuple[str, str], list[tuple[str, set]]] = field(repr=False)
    user_missing: dict[str, list] = field(default_factory=dict)  # qkey -> codes that read back as missing
    labels: dict[str, dict[float, str]] = field(default_factory=dict, repr=False)  # value labels written to the file


# --- generation ---------------------------------------------------------------------------------

weights_st = st.one_of(st.just(math.nan), st.just(0.0), st.floats(0.05, 5.0), st.floats(0.05, 5.0))


def column_values(draw, n: int, pool: list) -> list:
    """n values from a random sub-pool of ``pool``, so that groups and answers go down to zero."""
    sub = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True))
    return draw(st.lists(st.sampled_from(sub), min_size=n, max_size=n))


waves_st = st.integers(150, 199)  # waves the shipped OpinionQA codebook lacks


@st.composite
def atp_waves(draw, waves=waves_st) -> Survey:
    wave = draw(waves)
    n = draw(st.integers(0, 24))
    weights = draw(st.lists(weights_st, min_size=n, max_size=n))
    demographics = {c: column_values(draw, n, list(labels) + [MISSING]) for c, labels in ATP_DEMOGRAPHICS.items()}
    # Some waves lack a group's value label (no "Hindu" option at all): that group cannot be formed.
    unlabelled_groups = draw(st.sets(st.sampled_from(sorted(ATP_GROUPS)), max_size=2))
    groups = {key: conditions for key, conditions in ATP_GROUPS.items() if key not in unlabelled_groups}
    demographic_labels = {column: dict(labels) for column, labels in ATP_LABELS.items()}
    for key in unlabelled_groups:
        [(column, codes)] = ATP_GROUPS[key]
        for code in codes:
            del demographic_labels[column][float(code)]
    answers, options, n_options, user_missing, labels = {}, {}, {}, {}, {}
    for i in range(draw(st.integers(1, 4))):
        qkey = f"Q{i + 1}_W{wave}"
        codes = sorted(draw(st.sets(st.integers(1, 9), min_size=1, max_size=5)))
        declared_missing = draw(st.booleans())  # a labelled "Don't know" declared SPSS user-missing
        labelled = codes + ([98] if declared_missing else []) + [99]
        text = {c: f"Option {c}" for c in codes} | {98: "Don't know", 99: "Refused"}
        # Files may store labels in any order; options still go in ascending code order.
        labels[qkey] = {float(c): text[c] for c in draw(st.permutations(labelled))}
        kind = draw(st.sampled_from(["asked", "asked", "nobody", "unlabelled"]))
        pool = labelled + [MISSING]
        if kind == "unlabelled":
            pool.append(draw(st.sampled_from([c for c in range(1, 12) if c not in codes])))
        values = [MISSING] * n if kind == "nobody" else column_values(draw, n, pool)
        answers[qkey] = values
        options[qkey] = {float(c): slot for slot, c in enumerate(labelled)}
        n_options[qkey] = len(labelled)
        if declared_missing:
            user_missing[qkey] = [98]
    return Survey(f"ATP W{wave}.sav", weights, demographics, answers, options, n_options, groups, user_missing,
                  labels | demographic_labels)


@st.composite
def gss_files(draw) -> Survey:
    n = draw(st.integers(0, 24))
    weights = draw(st.lists(weights_st, min_size=n, max_size=n))
    demographics = {c: column_values(draw, n, codes + [MISSING, "d", "i"]) for c, codes in GSS_DEMOGRAPHICS.items()}
    qkeys = draw(st.lists(st.sampled_from(sorted(GSS_QUESTIONS)), min_size=1, max_size=3, unique=True))
    answers, options, n_options, labels = {}, {}, {}, {}
    for qkey in qkeys:
        k = GSS_QUESTIONS[qkey]
        low = draw(st.sampled_from([0, 1]))
        codes = [low + j for j in range(k)]
        labels[qkey] = {float(c): f"label {c}" for c in codes}
        kind = draw(st.sampled_from(["asked", "asked", "nobody", "unlabelled"]))
        pool = codes + [MISSING, "d", "i"] + ([low + k] if kind == "unlabelled" else [])  # one past the options
        answers[qkey] = ["d"] * n if kind == "nobody" else column_values(draw, n, pool)
        options[qkey] = {float(c): slot for slot, c in enumerate(codes)}
        n_options[qkey] = k + 1  # + the refusal slot no code maps to
    return Survey("GSS2022.dta", weights, demographics, answers, options, n_options, GSS_GROUPS, labels=labels)


def write_survey(survey: Survey, folder: Path) -> Path:
    """Write ``survey`` with pyreadstat as the real files come: labels, user- or extended-missing codes."""
    path = folder / survey.name
    n = len(survey.weights)
    if path.suffix == ".sav":
        frame = pd.DataFrame({"QKEY": np.arange(1, n + 1, dtype=float), f"WEIGHT_{survey.name[4:-4]}": survey.weights})
        for column, values in {**survey.demographics, **survey.answers}.items():
            frame[column] = np.array([np.nan if v is None else v for v in values], dtype=float)
        pyreadstat.write_sav(
            frame, str(path), variable_value_labels=survey.labels,
            column_labels={q: f"{q}. Question {q}?" for q in survey.answers},
            missing_ranges=survey.user_missing,
        )
    else:
        frame = pd.DataFrame({"id": np.arange(1, n + 1, dtype=float),
                              "wtssnrps": np.array(survey.weights, dtype=float)})
        letters = {}
        for column, values in {**survey.demographics, **survey.answers}.items():
            if not any(isinstance(v, int) for v in values):
                # pyreadstat would type a column of letters alone as text: write plain missing doubles.
                frame[column] = np.full(n, np.nan)
                continue
            # Integer codes mixed with missing letters, as GSS stores them (int32 + .d/.i).
            frame[column] = pd.Series([np.nan if v is None else v for v in values], dtype=object)
            used = sorted({v for v in values if isinstance(v, str)})
            if used:
                letters[column] = used
        # Stata wants label codes of the column's own type.
        labels = {c: {(int(k) if frame[c].dtype == object else k): v for k, v in lab.items()}
                  for c, lab in survey.labels.items()}
        pyreadstat.write_dta(frame, str(path), variable_value_labels=labels, missing_user_values=letters)
    return path


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
