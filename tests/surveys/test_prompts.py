"""Steered prompts byte-identical to SubPOP's verified examples (reference/subpop.md §2.3-2.4)."""

import pandas as pd
import pytest

from demoscope.errors import SpecError
from demoscope.surveys.finetuning import build_finetuning_frame
from demoscope.surveys.metadata import load_codebook
from demoscope.surveys.prompts import (
    SteeringType,
    generate_mcq,
    load_steering_prompts,
    render_prompt,
    steering_group,
    steering_prefix,
)

CARRYGUN_MCQ = (
    "Question: How often, if ever, do you carry a handgun or pistol outside your home, "
    "not including times when you are transporting it?\n"
    "A. All of the time\n"
    "B. Most of the time\n"
    "C. Only some of the time\n"
    "D. Never\n"
    "E. Refused\n"
    "Answer as a choice between A.,B.,C.,D.,E.\n"
    "\n"
    "Answer:"
)

EXPECTED_QA = (
    "Question: Which part of the United States do you currently live in?\n"
    "A. Northeast\n"
    "B. Midwest\n"
    "C. South\n"
    "D. West\n"
    "\n"
    "Answer: A. Northeast\n"
    "\n"
    "Answer the following question keeping in mind your previous answers.\n"
    "Question: How often, if ever, do you carry a handgun or pistol outside your home, "
    "not including times when you are transporting it?\n"
    "A. All of the time\n"
    "B. Most of the time\n"
    "C. Only some of the time\n"
    "D. Never\n"
    "E. Refused\n"
    "Answer as a choice between A.,B.,C.,D.,E.\n"
    "\n"
    "Answer:"
)

EXPECTED_BIO = (
    "Below you will be asked to provide a short description of the region you currently reside in "
    "within the US and then answer some questions.\n"
    "Description: I currently reside in the Northeast.\n"
    "\n"
    "Question: How often, if ever, do you carry a handgun or pistol outside your home, "
    "not including times when you are transporting it?\n"
    "A. All of the time\n"
    "B. Most of the time\n"
    "C. Only some of the time\n"
    "D. Never\n"
    "E. Refused\n"
    "Answer as a choice between A.,B.,C.,D.,E.\n"
    "\n"
    "Answer:"
)

EXPECTED_PORTRAY = (
    "Answer the following question as if you currently resided in the Northeast.\n"
    "\n"
    "Question: How often, if ever, do you carry a handgun or pistol outside your home, "
    "not including times when you are transporting it?\n"
    "A. All of the time\n"
    "B. Most of the time\n"
    "C. Only some of the time\n"
    "D. Never\n"
    "E. Refused\n"
    "Answer as a choice between A.,B.,C.,D.,E.\n"
    "\n"
    "Answer:"
)


@pytest.fixture(scope="module")
def carrygun():
    entry = load_codebook("opinionqa")["CARRYGUN_W26"]
    return entry.question, list(entry.options)


@pytest.mark.parametrize("kind, expected", [("QA", EXPECTED_QA), ("BIO", EXPECTED_BIO), ("PORTRAY", EXPECTED_PORTRAY)])
def test_prompt_is_byte_identical_to_subpop_verified_example(carrygun, kind, expected):
    question, options = carrygun
    assert render_prompt(kind, "CREGION", "Northeast", question, options) == expected


def test_mcq_ends_with_answer_and_no_trailing_space(carrygun):
    assert generate_mcq(*carrygun, add_answer_forcing=True) == CARRYGUN_MCQ
    plain = generate_mcq("Pick one", [" x ", "y"])
    assert plain == "Question: Pick one\nA. x\nB. y\n\nAnswer:"  # options stripped, no forcing line


def test_all_expands_to_bio_qa_portray_rows_in_that_order(carrygun):
    question, options = carrygun
    row = {"qkey": "CARRYGUN_W26", "attribute": "CREGION", "group": "Northeast", "question": question,
           "options": options, "responses": [0.1, 0.2, 0.3, 0.4], "refusal_rate": 0.05, "ordinal": [1.0, 2.0, 3.0, 4.0]}
    frame = build_finetuning_frame(pd.DataFrame([row]), "ALL", shuffle=False)
    assert frame["input_prompt"].tolist() == [EXPECTED_BIO, EXPECTED_QA, EXPECTED_PORTRAY]
    assert SteeringType.ALL.kinds == ("BIO", "QA", "PORTRAY")
    assert SteeringType("QA").kinds == ("QA",)


@pytest.mark.parametrize("attribute, opinionqa_name, steering_name, letter", [
    ("CITIZEN", "Yes", "a US Citizen", "A"),
    ("CITIZEN", "No", "a Non-US Citizen", "B"),
    ("MARITAL", "Never been married", "Unmarried and have never been married", "F"),
    ("POLPARTY", "Other", "Something else", "D"),
])
def test_opinionqa_group_names_map_to_steering_wording(attribute, opinionqa_name, steering_name, letter):
    assert steering_group(attribute, opinionqa_name) == steering_name
    row = {"qkey": "Q1", "attribute": attribute, "group": opinionqa_name, "question": "Q?", "options": ["a", "Refused"],
           "responses": [1.0], "refusal_rate": 0.0, "ordinal": [1.0]}
    frame = build_finetuning_frame(pd.DataFrame([row]), "QA")
    assert frame["group"].tolist() == [steering_name]
    assert f"\n\nAnswer: {letter}. {steering_name}\n\n" in frame["input_prompt"].iloc[0]


def test_other_is_mapped_only_for_polparty():
    assert steering_group("RACE", "Other") == "Other"
    expected = "Answer the following question as if your race or ethnicity were Other.\n\n"
    assert steering_prefix("PORTRAY", "RACE", "Other") == expected


def test_unknown_group_error_lists_the_valid_groups():
    with pytest.raises(SpecError, match=r"group 'Northwest' is not a steering option of attribute 'CREGION'") as err:
        steering_prefix("BIO", "CREGION", "Northwest")
    assert "'Northeast', 'Midwest', 'South', 'West'" in str(err.value)


def test_unknown_attribute_error_lists_known_attributes():
    with pytest.raises(SpecError, match=r"no steering prompt for attribute 'HEIGHT'; known attributes: CREGION, SEX"):
        steering_prefix("QA", "HEIGHT", "Tall")


def test_shipped_steering_table_has_12_attributes_with_parsed_options():
    prompts = load_steering_prompts()
    assert len(prompts) == 12
    assert prompts["EDUCATION"].options[3] == "Associate's degree"  # the literal uses double quotes there
    assert all(entry.options for entry in prompts.values())
