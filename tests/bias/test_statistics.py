"""Gender/race pairs and paired t-tests with Bonferroni (Kiritchenko & Mohammad 2018 §4; seed 004 variant)."""

import math
import re

import numpy as np
import pytest
from scipy.stats import t as student_t

from demoscope.bias import bias_statistics, gender_pairs, generate_eec, paired_t_test, race_pairs
from demoscope.errors import ConfigError


@pytest.fixture(scope="module")
def eec():
    """The EEC with planted score columns.

    ``base``: one value per instantiation (same for every person) + person noise in [0, 0.02), so
    any planted shift of 0.1 (gender) or 0.05 (race) decides every pair's sign.
    """
    frame = generate_eec()
    rng = np.random.default_rng(0)
    per_instantiation = frame.groupby(["Template", frame["Emotion word"].fillna("")]).ngroup()
    level = rng.uniform(0.2, 0.7, per_instantiation.max() + 1)[per_instantiation]
    base = level + rng.uniform(0, 0.02, len(frame))
    return frame.assign(
        base=base,
        same=level,  # identical scores for every person of an instantiation
        female_up=base + 0.1 * (frame["Gender"] == "female"),
        aa_down=base - 0.05 * (frame["Race"] == "African-American"),
        noisy=rng.uniform(0, 1, len(frame)),
    )


def test_pair_counts_are_1584_paper_1440_seed_144_race(eec):
    paper, seed = gender_pairs(eec, "base", "paper"), gender_pairs(eec, "base", "seed")
    race = race_pairs(eec, "base")
    assert (len(paper), len(seed), len(race)) == (1584, 1440, 144)
    assert paper["pair"].value_counts()["gender names (means)"] == 144
    assert "gender names (means)" not in set(seed["pair"])
    # 10 noun-phrase pairs per instantiation; she/he in subject slots, her/him in object slots.
    assert seed.groupby(["template", "emotion_word"], dropna=False).size().eq(10).all()
    assert seed["pair"].value_counts()[["she/he", "her/him"]].tolist() == [82, 62]
    assert race.groupby(["template", "emotion_word"], dropna=False).size().eq(1).all()


def test_each_noun_phrase_pair_differs_only_in_the_person(eec):
    pairs = gender_pairs(eec, "base", "seed")

    def swap(row):
        text = row.sentence_a
        for a, b in ((row.person_a, row.person_b), (row.person_a.capitalize(), row.person_b.capitalize())):
            text = re.sub(rf"\b{a}\b", b, text)
        return text.replace("herself", "himself")

    assert (pairs.apply(swap, axis=1) == pairs["sentence_b"]).all()
    assert (pairs["sentence_a"] != pairs["sentence_b"]).all()


def test_name_average_pairs_are_the_means_over_20_names(eec):
    row = eec[(eec["Template"] == "I saw <person object> in the market.")]
    names = row[row["Race"].notna()]
    paper = gender_pairs(eec, "noisy", "paper")
    got = paper[(paper["template"] == "I saw <person object> in the market.")
                & (paper["pair"] == "gender names (means)")]
    assert got["score_a"].item() == pytest.approx(names.loc[names["Gender"] == "female", "noisy"].mean())
    assert got["score_b"].item() == pytest.approx(names.loc[names["Gender"] == "male", "noisy"].mean())
    race = race_pairs(eec, "noisy")
    got = race[race["template"] == "I saw <person object> in the market."]
    assert got["score_a"].item() == pytest.approx(names.loc[names["Race"] == "African-American", "noisy"].mean())
    assert got["delta"].item() == pytest.approx(
        names.loc[names["Race"] == "African-American", "noisy"].mean()
        - names.loc[names["Race"] == "European", "noisy"].mean())
    assert got["person_a"].item() == "mean of 20 African-American names"


def test_seed_race_pairs_are_the_notebooks_groupby(eec):
    """Seed 004 pairs race with a pandas groupby over (template, emotion word), which drops the neutral templates."""
    names = eec[eec["Race"].notna()]
    means = names.groupby(["Template", "Emotion word", "Race"])["noisy"].mean().unstack("Race")  # NaN keys dropped
    want = (means["African-American"] - means["European"]).sort_values().to_numpy()
    seed = race_pairs(eec, "noisy", "seed")
    assert len(seed) == 140 and len(race_pairs(eec, "noisy")) == 144
    np.testing.assert_allclose(np.sort(seed["delta"].to_numpy()), want)
    assert seed["emotion_word"].notna().all()


def test_t_statistic_matches_a_hand_computation():
    a, b = [0.3, 0.4, 0.5, 0.9], [0.2, 0.1, 0.5, 0.6]
    deltas = [0.1, 0.3, 0.0, 0.3]
    mean = sum(deltas) / 4
    sd = math.sqrt(sum((d - mean) ** 2 for d in deltas) / 3)
    got = paired_t_test(a, b)
    assert got["t"] == pytest.approx(mean / (sd / math.sqrt(4)))
    assert got["t"] == pytest.approx(7 / 3)  # mean 0.175, sd 0.15, se 0.075
    assert got["p_value"] == pytest.approx(2 * student_t.sf(7 / 3, df=3))  # two-sided, n - 1 degrees of freedom
    assert (got["n_a_higher"], got["n_b_higher"], got["n_equal"]) == (3, 0, 1)
    assert got["mean_delta_a_higher"] == pytest.approx(0.7 / 3)
    assert math.isnan(got["mean_delta_b_higher"])


def test_statistics_t_equals_the_hand_formula_on_the_pair_deltas(eec):
    stats = bias_statistics(eec, ["noisy"])
    deltas = gender_pairs(eec, "noisy")["delta"].to_numpy()
    hand = deltas.mean() / (deltas.std(ddof=1) / math.sqrt(len(deltas)))
    assert stats.loc[stats["comparison"] == "gender", "t"].item() == pytest.approx(hand)


def test_planted_female_shift_is_detected_with_every_pair_female_higher(eec):
    stats = bias_statistics(eec, ["base", "female_up"]).set_index(["system", "comparison"])
    row = stats.loc[("female_up", "gender")]
    assert row["significant"] and row["verdict"] == "female higher"
    assert row["p_bonferroni"] < 1e-10 and row["n_tests"] == 4
    assert (row["n_a_higher"], row["n_b_higher"], row["n_equal"]) == (1584, 0, 0)
    assert row["mean_delta"] == pytest.approx(0.1, abs=0.01)
    # The shift hits both races' women equally: no race effect.
    assert stats.loc[("female_up", "race"), "mean_delta"] == pytest.approx(stats.loc[("base", "race"), "mean_delta"])


def test_planted_race_shift_is_detected_with_every_pair_aa_lower(eec):
    stats = bias_statistics(eec, ["aa_down"], variant="seed").set_index("comparison")
    assert stats.loc["race", "significant"] and stats.loc["race", "verdict"] == "European higher"
    # seed 004: no neutral templates
    assert (stats.loc["race", "n_a_higher"], stats.loc["race", "n_b_higher"]) == (0, 140)
    assert stats.loc["race", "mean_delta"] == pytest.approx(-0.05, abs=0.01)
    assert stats.loc["gender", "n_pairs"] == 1440


def test_identical_scores_give_no_significance_and_all_pairs_equal(eec):
    stats = bias_statistics(eec, ["same"], subsets=("all", "neutral", "joy"))
    assert not stats["significant"].any()
    assert (stats["p_bonferroni"] == 1.0).all() and (stats["t"] == 0.0).all()
    assert (stats["n_equal"] == stats["n_pairs"]).all() and (stats["n_a_higher"] + stats["n_b_higher"] == 0).all()
    counts = stats.set_index(["comparison", "subset"])["n_pairs"]
    # Paper: 11 x 4 = 44 gender comparisons on the neutral templates; 11 x 35 on joy.
    assert counts[("gender", "neutral")] == 44 and counts[("race", "neutral")] == 4
    assert counts[("gender", "joy")] == 11 * 35 and counts[("race", "joy")] == 35


def test_bonferroni_multiplies_by_the_family_and_caps_at_one(eec):
    stats = bias_statistics(eec, ["base", "noisy", "female_up"])
    assert (stats["n_tests"] == 6).all()
    assert np.allclose(stats["p_bonferroni"], np.minimum(1.0, stats["p_value"] * 6))
    paper = bias_statistics(eec, ["noisy"], n_tests=438)
    assert np.allclose(paper["p_bonferroni"], np.minimum(1.0, paper["p_value"] * 438))


def test_bad_inputs_raise_config_errors(eec):
    with pytest.raises(ConfigError, match="no score column"):
        gender_pairs(eec, "missing")
    with pytest.raises(ConfigError, match="missing or non-numeric"):
        gender_pairs(eec.assign(bad=np.where(eec.index == 3, np.nan, 0.5)), "bad")
    with pytest.raises(ConfigError, match="without their partner"):
        gender_pairs(eec[eec["Person"] != "my dad"], "base")
    with pytest.raises(ConfigError, match="unknown gender-pair variant"):
        gender_pairs(eec, "base", "both")
    with pytest.raises(ConfigError, match="unknown subsets"):
        bias_statistics(eec, ["base"], subsets=("happy",))
