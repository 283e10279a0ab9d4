"""Random Pew ATP-style ``.sav`` waves and GSS-style ``.dta`` files for the aggregation property tests.

The group definitions are data copied from the shipped specs; the strategies
draw empty and tiny groups, missing and zero weights, refusals, unlabelled
codes and user-/extended-missing codes (see ``test_aggregate_properties.py``
for the rules the reference applies to them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
from hypothesis import strategies as st

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
