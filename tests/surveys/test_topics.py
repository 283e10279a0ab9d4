"""Question topics: the built-in taxonomy, user YAML and CSV files, and reading questions back from prompts."""

import pandas as pd
import pytest

from demoscope.errors import ConfigError
from demoscope.surveys.topics import OTHER, load_topics, question_of_prompt, topics_of

QA_PROMPT = (
    "Question: In politics today, do you consider yourself a\nA. Republican\nB. Democrat\n\nAnswer: B. Democrat\n\n"
    "Answer the following question keeping in mind your previous answers.\n"
    "Question: How often, if ever, do you go shooting or to a gun range?\nA. Often\nB. Never\nAnswer:"
)


@pytest.mark.parametrize("text, topic", [
    ("How often, if ever, do you go shooting or to a gun range?", "guns"),
    ("Please tell me whether or not you think it should be possible for a pregnant woman to obtain a legal abortion",
     "gender-family"),
    ("Do you think the number of immigrants to America nowadays should be...", "race-immigration"),
    ("Do you have a favorable or unfavorable opinion of nato, that is, North Atlantic Treaty Organization",
     "foreign-affairs"),
    ("Which of these statements comes closest to describing your feelings about the Bible?", "religion"),
    ("Generally speaking, would you say that", OTHER),
])
def test_built_in_taxonomy_gives_the_first_matching_topic(text, topic):
    assert load_topics().topic("ANY_W1", text) == topic


def test_built_in_taxonomy_lists_its_topics_with_other_last():
    topics = load_topics().topics
    assert topics[0] == "guns" and topics[-1] == OTHER and len(topics) == len(set(topics)) == 13


def test_question_is_read_from_the_last_question_of_a_steered_prompt():
    assert question_of_prompt(QA_PROMPT) == "How often, if ever, do you go shooting or to a gun range?"


def test_topics_of_a_prepared_split_labels_every_row_by_its_question():
    frame = pd.DataFrame({"qkey": ["SHOOT_W26", "SHOOT_W26", "X_W1"],
                          "input_prompt": [QA_PROMPT, QA_PROMPT, "Question: Generally speaking?\nA. Yes\nAnswer:"]})
    assert topics_of(frame).tolist() == ["guns", "guns", OTHER]


def test_user_yaml_keeps_its_order_and_is_case_insensitive(tmp_path):
    path = tmp_path / "topics.yaml"
    path.write_text("money: ['\\bTAX']\nguns: ['gun', 'tax']\n")
    table = load_topics(path)
    assert table.topic("Q", "Is your federal income tax too high?") == "money"  # first topic in file order wins
    assert table.topic("Q", "GUN owners") == "guns" and table.topic("Q", "weather") == OTHER


def test_user_csv_assigns_by_key_and_leaves_the_rest_other(tmp_path):
    path = tmp_path / "topics.csv"
    path.write_text("qkey,topic\nGUNLOCKED2_W26,safety\nnatenvir,environment\n")
    table = load_topics(path)
    assert table.topic("GUNLOCKED2_W26") == "safety" and table.topic("natspac", "space") == OTHER
    assert table.topics == ["environment", "safety", OTHER]


@pytest.mark.parametrize("name, text, message", [
    ("topics.yaml", "gender and family: ['women']\n", "letters, digits"),
    ("topics.yaml", "guns: ['gun(']\n", "bad regular expression"),
    ("topics.yaml", "- guns\n", "non-empty list"),
    ("topics.csv", "key,topic\nA,b\n", "expected columns qkey,topic"),
])
def test_bad_topic_files_get_a_clear_error(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_topics(path)


def test_missing_topic_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_topics(tmp_path / "nope.yaml")
