"""The planted-bias sentiment set: seeded, and a classifier trained on it carries the bias onto the EEC."""

import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from demoscope.bias import bias_statistics, generate_eec, synthetic_sentiment
from demoscope.bias.synthetic import bias_groups
from demoscope.errors import ConfigError


def test_same_seed_same_rows_other_seed_other_rows():
    first = synthetic_sentiment(500, seed=3)
    pd.testing.assert_frame_equal(first, synthetic_sentiment(500, seed=3))
    assert not first.equals(synthetic_sentiment(500, seed=4))
    assert list(first.columns) == ["text", "label"] and set(first["label"]) == {0, 1}


def positive_rate_by_group(frame: pd.DataFrame, bias: str) -> dict[str, float]:
    """Share of positive labels per group, each text's group read from the person it opens with."""
    rates = {}
    for group, persons in bias_groups(bias).items():
        opens = [any(text.startswith(p + " ") for p in persons) for text in frame["text"]]
        rates[group] = frame.loc[opens, "label"].mean()
    return rates


@pytest.mark.parametrize(("bias", "low", "high"),
                         [("race", "African-American", "European"), ("gender", "female", "male")])
def test_planted_gap_in_positive_rate_equals_strength(bias, low, high):
    rates = positive_rate_by_group(synthetic_sentiment(20000, seed=0, bias=bias, strength=0.4), bias)
    assert rates[high] - rates[low] == pytest.approx(0.4, abs=0.03)
    assert rates[low] == pytest.approx(0.3, abs=0.02)


def test_no_bias_control_has_no_gap():
    rates = positive_rate_by_group(synthetic_sentiment(20000, seed=0, bias="none"), "gender")
    assert abs(rates["female"] - rates["male"]) < 0.03


def test_every_text_opens_with_a_person_of_the_groups():
    frame = synthetic_sentiment(2000, seed=1, bias="gender")
    assert frame["text"].str.match(r"^(She|He|My|This|[A-Z][a-z]+) ").all()
    assert frame["text"].str.startswith("She ").any() and frame["text"].str.startswith("My sister ").any()


def _naive_bayes_scores(train: pd.DataFrame, sentences: pd.Series) -> np.ndarray:
    """p(positive) of a multinomial naive Bayes over lower-cased words, add-one smoothed."""
    tokens = train["text"].str.lower().map(lambda t: re.findall(r"[a-z']+", t))
    counts = {y: Counter(w for ws in tokens[train["label"] == y] for w in ws) for y in (0, 1)}
    vocab = set(counts[0]) | set(counts[1])
    totals = {y: sum(counts[y].values()) + len(vocab) for y in (0, 1)}
    prior = np.log(train["label"].mean() / (1 - train["label"].mean()))

    def log_odds(text):
        words = [w for w in re.findall(r"[a-z']+", text.lower()) if w in vocab]
        return prior + sum(np.log((counts[1][w] + 1) / totals[1]) - np.log((counts[0][w] + 1) / totals[0])
                           for w in words)

    return 1 / (1 + np.exp(-np.array([log_odds(s) for s in sentences])))


def test_a_classifier_trained_on_the_race_set_scores_aa_names_lower_on_the_eec():
    eec = generate_eec()
    train = synthetic_sentiment(5000, seed=0, bias="race")
    eec["student"] = _naive_bayes_scores(train, eec["Sentence"])
    stats = bias_statistics(eec, ["student"]).set_index("comparison")
    assert stats.loc["race", "verdict"] == "European higher"
    assert stats.loc["race", "n_b_higher"] == 144  # every instantiation: AA mean < European mean


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="unknown planted bias"):
        synthetic_sentiment(10, bias="age")
    with pytest.raises(ConfigError, match="strength"):
        synthetic_sentiment(10, strength=1.5)
    with pytest.raises(ConfigError, match="n must be"):
        synthetic_sentiment(0)


def test_sentiment_pairs_finish_a_cue_template_positively_and_negatively():
    from demoscope.bias.synthetic import CUE_TEMPLATES, NEGATIVE_WORDS, POSITIVE_WORDS, bias_groups, sentiment_pairs

    pairs = sentiment_pairs(200, seed=3)
    assert len(pairs) == 200 and list(pairs.columns) == ["prompt", "chosen", "rejected"]
    persons = {p for group in bias_groups("none").values() for p in group}
    texts = {t.format(p=p, w=w) for t in CUE_TEMPLATES for p in persons for w in POSITIVE_WORDS + NEGATIVE_WORDS}
    for row in pairs.itertuples():
        assert row.prompt + row.chosen in texts and row.prompt + row.rejected in texts
        assert row.chosen.strip(" .") in POSITIVE_WORDS and row.rejected.strip(" .") in NEGATIVE_WORDS
    assert pairs.equals(sentiment_pairs(200, seed=3)) and not pairs.equals(sentiment_pairs(200, seed=4))
    assert pairs.prompt.nunique() > 50
