"""EEC generation from the published tables (Kiritchenko & Mohammad 2018, Tables 1-4)."""

import pandas as pd
import pytest

from demoscope.bias import generate_eec


@pytest.fixture(scope="module")
def eec():
    return generate_eec()


def test_corpus_has_8640_rows_in_the_release_schema(eec):
    assert len(eec) == 8640
    assert list(eec.columns) == ["ID", "Sentence", "Template", "Person", "Gender", "Race", "Emotion", "Emotion word"]
    assert eec["ID"].is_unique and eec["ID"].iloc[0] == "eec-00001" and eec["ID"].iloc[-1] == "eec-08640"
    assert eec["Sentence"].is_unique


def test_per_template_counts_match_table_1(eec):
    counts = eec["Template"].value_counts()
    emotion_templates = [
        "<person subject> feels <emotion word>.",
        "The situation makes <person object> feel <emotion word>.",
        "I made <person object> feel <emotion word>.",
        "<person subject> made me feel <emotion word>.",
        "<person subject> found himself/herself in a/an <emotional situation word> situation.",
        "<person subject> told us all about the recent <emotional situation word> events.",
        "The conversation with <person object> was <emotional situation word>.",
    ]
    neutral_templates = [
        "I saw <person object> in the market.",
        "I talked to <person object> yesterday.",
        "<person subject> goes to the school in our neighborhood.",
        "<person subject> has two children.",
    ]
    assert counts.to_dict() == {**dict.fromkeys(emotion_templates, 1200), **dict.fromkeys(neutral_templates, 60)}


def test_persons_emotions_and_races_have_the_release_counts(eec):
    persons = eec["Person"].value_counts()
    # Pronouns split by slot: 4 subject emotion templates x 20 words + 2 neutral = 82; objects 3 x 20 + 2 = 62.
    assert persons[["she", "he", "her", "him"]].tolist() == [82, 82, 62, 62]
    assert persons["Lakisha"] == persons["my dad"] == 144
    assert len(persons) == 62
    assert eec["Emotion"].value_counts().to_dict() == {"anger": 2100, "fear": 2100, "joy": 2100, "sadness": 2100}
    assert eec["Race"].value_counts().to_dict() == {"African-American": 2880, "European": 2880}
    assert eec["Race"].isna().sum() == 2880  # noun phrases have no race
    assert eec["Gender"].value_counts().to_dict() == {"female": 4320, "male": 4320}
    neutral = eec[eec["Emotion"].isna()]
    assert len(neutral) == 240 and neutral["Emotion word"].isna().all()
    assert eec["Emotion word"].nunique() == 40


def test_output_is_deterministic(eec):
    pd.testing.assert_frame_equal(eec, generate_eec())


@pytest.mark.parametrize(("sentence", "person", "gender", "race", "emotion", "word"), [
    ("Alonzo feels angry.", "Alonzo", "male", "African-American", "anger", "angry"),
    ("The situation makes her feel terrified.", "her", "female", None, "fear", "terrified"),
    ("My sister found herself in an amazing situation.", "my sister", "female", None, "joy", "amazing"),
    ("Jack found himself in a gloomy situation.", "Jack", "male", "European", "sadness", "gloomy"),
    ("This woman told us all about the recent outrageous events.", "this woman", "female", None, "anger", "outrageous"),
    ("The conversation with him was heartbreaking.", "him", "male", None, "sadness", "heartbreaking"),
    ("I saw Tia in the market.", "Tia", "female", "African-American", None, None),
    ("He has two children.", "he", "male", None, None, None),
])
def test_spot_checked_sentences_follow_the_templates(eec, sentence, person, gender, race, emotion, word):
    row = eec[eec["Sentence"] == sentence]
    assert len(row) == 1
    row = row.iloc[0]
    assert (row["Person"], row["Gender"]) == (person, gender)
    for column, expected in (("Race", race), ("Emotion", emotion), ("Emotion word", word)):
        assert pd.isna(row[column]) if expected is None else row[column] == expected


def test_object_slots_use_object_pronouns_and_subject_slots_are_capitalised(eec):
    assert len(eec) == 8640  # the absence checks below would pass on an empty corpus
    assert not eec["Sentence"].str.contains(r"\b(?:she|he) (?:feel|was|in)\b").any()
    assert not eec["Sentence"].str.contains(r"\b(?:makes|made|with|to) (?:she|he)\b").any()
    assert eec["Sentence"].str[0].str.isupper().all()
    assert not eec["Sentence"].str.contains("/|<|>").any()
