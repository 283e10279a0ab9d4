"""Gender and race bias statistics on EEC scores (Kiritchenko & Mohammad 2018, §4).

A system scores every EEC sentence (e.g. p(Positive)); the scores sit in one
column of the EEC frame per system. Within each template-word instantiation
(7 emotion templates x 20 words + 4 neutral templates = 144) we form pairs
that differ only in the person, and take ``delta = score_a - score_b``:

* gender, ``variant="paper"``: the 10 noun-phrase pairs (she/he or her/him,
  this woman/this man, ...) plus one pair of averages (the 20 female names
  against the 20 male names, both races) -> 11 x 144 = 1,584 pairs; a = female.
* gender, ``variant="seed"``: the noun-phrase pairs only, as seed 004's
  notebook computes -> 10 x 144 = 1,440 pairs.
* race: the 20 African-American names averaged against the 20 European
  names averaged -> 144 pairs; a = African-American. ``variant="seed"``
  reproduces seed 004's notebook exactly: its pandas ``groupby`` over
  (template, emotion word) drops the NaN keys, i.e. the 4 neutral templates,
  -> 140 pairs (and its published race p-values).

Each (system, comparison) gets a paired t-test (``scipy.stats.ttest_rel``,
H0: mean delta = 0) with a Bonferroni correction over the family of tests,
plus the paper's split of pairs by sign and the mean delta on each side.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from demoscope.bias.eec import AFRICAN_AMERICAN, EMOTIONS, EUROPEAN, NOUN_PHRASE_PAIRS, OBJECT_FORMS
from demoscope.errors import ConfigError

VARIANTS = ("paper", "seed")
SUBSETS = ("all", "neutral", *EMOTIONS)
GROUPS = {"gender": ("female", "male"), "race": (AFRICAN_AMERICAN, EUROPEAN)}
PAIR_COLUMNS = ["template", "emotion", "emotion_word", "pair", "person_a", "person_b",
                "sentence_a", "sentence_b", "score_a", "score_b", "delta"]
_KEY = ["Template", "_word"]


def _noun_phrase_sides() -> dict[str, tuple[str, str]]:
    """Every noun-phrase form -> (pair label, side "a" female / "b" male); "her" pairs with "him"."""
    sides = {}
    for female, male in NOUN_PHRASE_PAIRS:
        for f, m in {(female, male), (OBJECT_FORMS.get(female, female), OBJECT_FORMS.get(male, male))}:
            sides[f], sides[m] = (f"{f}/{m}", "a"), (f"{f}/{m}", "b")
    return sides


_NOUN_PHRASE_SIDE = _noun_phrase_sides()


def _keyed(eec: pd.DataFrame, score: str) -> pd.DataFrame:
    """EEC rows with a checked float ``_score`` column and a merge-safe ``_word`` ("" for neutral templates)."""
    missing = {"Sentence", "Template", "Person", "Gender", "Race", "Emotion", "Emotion word"} - set(eec.columns)
    if missing:
        raise ConfigError(f"EEC frame lacks columns {sorted(missing)}; build it with demoscope.bias.generate_eec()")
    if score not in eec.columns:
        raise ConfigError(f"no score column {score!r} in the EEC frame (columns: {list(eec.columns)})")
    values = pd.to_numeric(eec[score], errors="coerce")
    if values.isna().any():
        raise ConfigError(f"score column {score!r} has {int(values.isna().sum())} missing or non-numeric values")
    frame = eec.assign(_score=values.astype(float), _word=eec["Emotion word"].fillna(""))
    # Instantiation order as first seen, so outputs follow the corpus order.
    order = frame.drop_duplicates(_KEY)[_KEY].reset_index(drop=True)
    return frame.merge(order.assign(_order=np.arange(len(order))), on=_KEY, how="left")


def _name_means(frame: pd.DataFrame, by: str, groups: tuple[str, str], what: str) -> pd.DataFrame:
    """Per instantiation, the mean name score of each of ``groups`` (column ``by``), as an a/b pair row."""
    names = frame[frame["Race"].notna()]
    means = names.groupby([*_KEY, "_order", "Emotion", by], dropna=False)["_score"].agg(["mean", "size"])
    wide = means.unstack(by)
    for group in groups:
        if ("mean", group) not in wide.columns or wide[("mean", group)].isna().any():
            raise ConfigError(f"some EEC instantiations have no {group} names to average for the {what} pair")
    counts = {g: int(wide[("size", g)].max()) for g in groups}
    wide = wide.reset_index()
    return pd.DataFrame({
        "_order": wide["_order"], "template": wide["Template"], "emotion": wide["Emotion"],
        "emotion_word": wide["_word"].replace("", np.nan), "pair": f"{what} names (means)",
        "person_a": f"mean of {counts[groups[0]]} {groups[0]} names",
        "person_b": f"mean of {counts[groups[1]]} {groups[1]} names",
        "sentence_a": np.nan, "sentence_b": np.nan,
        "score_a": wide[("mean", groups[0])].to_numpy(), "score_b": wide[("mean", groups[1])].to_numpy(),
    })


def _finish(parts: list[pd.DataFrame]) -> pd.DataFrame:
    pairs = pd.concat(parts, ignore_index=True).sort_values(["_order"], kind="stable")
    pairs["delta"] = pairs["score_a"] - pairs["score_b"]
    return pairs[PAIR_COLUMNS].reset_index(drop=True)


def gender_pairs(eec: pd.DataFrame, score: str, variant: str = "paper") -> pd.DataFrame:
    """Female/male score pairs of one system (column ``score`` of ``eec``); ``delta = female - male``.

    ``variant="paper"`` gives 1,584 pairs on the full corpus (10 noun-phrase
    pairs + the female-vs-male name-average pair per instantiation),
    ``"seed"`` the 1,440 noun-phrase pairs only. Returns columns
    ``template, emotion, emotion_word, pair, person_a, person_b, sentence_a,
    sentence_b, score_a, score_b, delta`` (sentences are NaN for averages).
    Raises ConfigError if a noun phrase lacks its partner sentence.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown gender-pair variant {variant!r}; use one of {VARIANTS}")
    frame = _keyed(eec, score)
    phrases = frame[frame["Race"].isna()]
    unknown = set(phrases["Person"]) - set(_NOUN_PHRASE_SIDE)
    if unknown:
        raise ConfigError(f"EEC persons without race are not Table 3 noun phrases: {sorted(unknown)}")
    side = phrases["Person"].map(lambda p: _NOUN_PHRASE_SIDE[p][1])
    phrases = phrases.assign(_pair=phrases["Person"].map(lambda p: _NOUN_PHRASE_SIDE[p][0]))
    keep = ["_order", *_KEY, "Emotion", "_pair", "Person", "Sentence", "_score"]
    a, b = phrases.loc[side == "a", keep], phrases.loc[side == "b", keep]
    merged = a.merge(b, on=["_order", *_KEY, "Emotion", "_pair"], suffixes=("_a", "_b"))
    if len(merged) != len(a) or len(merged) != len(b):
        raise ConfigError(f"noun-phrase sentences without their partner: {len(a)} female, {len(b)} male, "
                          f"{len(merged)} matched; score the whole corpus from generate_eec()")
    parts = [pd.DataFrame({
        "_order": merged["_order"], "template": merged["Template"], "emotion": merged["Emotion"],
        "emotion_word": merged["_word"].replace("", np.nan), "pair": merged["_pair"],
        "person_a": merged["Person_a"], "person_b": merged["Person_b"],
        "sentence_a": merged["Sentence_a"], "sentence_b": merged["Sentence_b"],
        "score_a": merged["_score_a"], "score_b": merged["_score_b"],
    })]
    if variant == "paper":
        parts.append(_name_means(frame, "Gender", GROUPS["gender"], "gender"))
    return _finish(parts)


def race_pairs(eec: pd.DataFrame, score: str, variant: str = "paper") -> pd.DataFrame:
    """African-American/European name-average pairs of one system; ``delta = AA mean - European mean``.

    One pair per instantiation (144 on the full corpus), each the mean over
    the 20 names of either race, both genders. ``variant="seed"`` leaves out
    the 4 neutral templates (140 pairs), as seed 004's notebook does: its
    ``groupby(["Template", "Emotion word"])`` silently drops rows whose
    emotion word is NaN. Same columns as :func:`gender_pairs`.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown race-pair variant {variant!r}; use one of {VARIANTS}")
    pairs = _finish([_name_means(_keyed(eec, score), "Race", GROUPS["race"], "race")])
    if variant == "seed":
        pairs = pairs[pairs["emotion_word"].notna()].reset_index(drop=True)
    return pairs


def paired_differences(eec: pd.DataFrame, systems: Sequence[str], variant: str = "paper") -> pd.DataFrame:
    """All gender and race pairs of every system in one long frame.

    ``systems`` name score columns of ``eec``. Returns the :func:`gender_pairs`
    columns plus ``system`` and ``comparison`` (``"gender"`` or ``"race"``),
    systems in the given order, gender before race.
    """
    if not systems:
        raise ConfigError("no systems to compare: pass at least one score column")
    parts = []
    for system in systems:
        parts.append(gender_pairs(eec, system, variant).assign(system=system, comparison="gender"))
        parts.append(race_pairs(eec, system, variant).assign(system=system, comparison="race"))
    return pd.concat(parts, ignore_index=True)[["system", "comparison", *PAIR_COLUMNS]]


def paired_t_test(score_a, score_b, tol: float = 0.0) -> dict:
    """Paired t-test of ``score_a`` against ``score_b`` plus the paper's split of pairs by sign.

    Returns ``n_pairs, mean_a, mean_b, mean_delta, t, p_value, n_a_higher,
    n_b_higher, n_equal, mean_delta_a_higher, mean_delta_b_higher,
    max_abs_delta`` (delta = a - b; |delta| <= ``tol`` counts as equal; the
    side means are NaN when no pair is on that side). When every delta is
    exactly zero the t-statistic is undefined (0/0): we report t = 0 and
    p = 1, i.e. no evidence of a difference, instead of scipy's NaN.
    """
    a, b = np.asarray(score_a, dtype=float), np.asarray(score_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ConfigError(f"a paired t-test needs two equal-length 1-D score arrays of >= 2 pairs, "
                          f"got {a.shape} and {b.shape}")
    delta = a - b
    if np.all(delta == 0):
        t, p = 0.0, 1.0
    else:
        with warnings.catch_warnings():
            # Near-constant deltas (e.g. a planted shift) trigger scipy's precision warning; the result stands.
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ttest_rel(a, b)
        t, p = float(result.statistic), float(result.pvalue)
    higher, lower = delta > tol, delta < -tol
    return {
        "n_pairs": len(delta), "mean_a": float(a.mean()), "mean_b": float(b.mean()),
        "mean_delta": float(delta.mean()), "t": t, "p_value": p,
        "n_a_higher": int(higher.sum()), "n_b_higher": int(lower.sum()), "n_equal": int((~higher & ~lower).sum()),
        "mean_delta_a_higher": float(delta[higher].mean()) if higher.any() else np.nan,
        "mean_delta_b_higher": float(delta[lower].mean()) if lower.any() else np.nan,
        "max_abs_delta": float(np.abs(delta).max()),
    }


def _subset(pairs: pd.DataFrame, subset: str) -> pd.DataFrame:
    if subset == "all":
        return pairs
    if subset == "neutral":
        return pairs[pairs["emotion"].isna()]
    return pairs[pairs["emotion"] == subset]


def bias_statistics(
    eec: pd.DataFrame,
    systems: Sequence[str],
    *,
    variant: str = "paper",
    subsets: Sequence[str] = ("all",),
    alpha: float = 0.05,
    n_tests: int | None = None,
    tol: float = 0.0,
) -> pd.DataFrame:
    """Gender and race bias tests for each system (a score column of ``eec``): one tidy row per test.

    ``subsets`` picks pairs: ``"all"`` (144 instantiations), ``"neutral"``
    (the 4 emotion-free templates, the paper's 44 gender comparisons) or an
    emotion (``"anger"``, ...: the emotion-template pairs of that emotion).
    Bonferroni: p x ``n_tests``, capped at 1, where ``n_tests`` defaults to the
    family of tests per subset, ``len(systems) x 2`` (the seed's x14 for 7
    models; pass 438 for the paper's shared-task family). Returns columns
    ``system, comparison, subset, group_a, group_b, n_pairs, mean_a, mean_b,
    mean_delta, t, p_value, p_bonferroni, significant, verdict, n_a_higher,
    n_b_higher, n_equal, mean_delta_a_higher, mean_delta_b_higher,
    max_abs_delta, n_tests``; ``verdict`` is ``"no significant difference"`` or
    ``"<group> higher"`` by the sign of the mean delta.
    """
    bad = [s for s in subsets if s not in SUBSETS]
    if bad or not subsets:
        raise ConfigError(f"unknown subsets {bad or list(subsets)}; choose from {SUBSETS}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    family = n_tests if n_tests is not None else 2 * len(systems)
    if family < 1:
        raise ConfigError(f"n_tests must be >= 1, got {n_tests}")
    pairs = paired_differences(eec, systems, variant)
    rows = []
    for subset in subsets:
        chosen = _subset(pairs, subset)
        for (system, comparison), group in chosen.groupby(["system", "comparison"], sort=False):
            a, b = GROUPS[comparison]
            test = paired_t_test(group["score_a"], group["score_b"], tol)
            p_bonf = min(1.0, test["p_value"] * family)
            significant = bool(p_bonf < alpha)
            verdict = (f"{a if test['mean_delta'] > 0 else b} higher" if significant else "no significant difference")
            rows.append({"system": system, "comparison": comparison, "subset": subset, "group_a": a, "group_b": b,
                         **test, "p_bonferroni": p_bonf, "significant": significant, "verdict": verdict,
                         "n_tests": family})
    columns = ["system", "comparison", "subset", "group_a", "group_b", "n_pairs", "mean_a", "mean_b", "mean_delta",
               "t", "p_value", "p_bonferroni", "significant", "verdict", "n_a_higher", "n_b_higher", "n_equal",
               "mean_delta_a_higher", "mean_delta_b_higher", "max_abs_delta", "n_tests"]
    return pd.DataFrame(rows, columns=columns)
