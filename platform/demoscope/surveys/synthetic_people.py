"""The synthetic population: who the respondents are (real Pew ATP and GSS demographic columns).

Marginals are realistic-ish and correlated where it matters (ideology with
party, income with education); every SubPOP group has respondents at a few
thousand people. Used by :mod:`demoscope.surveys.synthetic`, which adds the
opinions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REFUSED = 99  # Pew's code for a refused answer
DEMOGRAPHIC_REFUSE_P = 0.01

# Pew ATP demographics: column -> (column label, value labels for codes 1..n, marginal, lean).
# A marginal of None means the column is drawn conditionally (see atp_people);
# lean places a value on a left (-1) .. right (+1) axis and marks a strong attribute.
ATP_DEMOGRAPHICS: dict[str, tuple[str, list[str], list[float] | None, dict[int, float] | None]] = {
    "F_AGECAT": ("Age category", ["18-29", "30-49", "50-64", "65+"], [0.21, 0.33, 0.25, 0.21], None),
    "F_SEX": ("Sex", ["Male", "Female"], [0.49, 0.51], None),
    "F_EDUCCAT2": ("Education", ["Less than high school", "High school graduate", "Some college, no degree",
                                 "Associate's degree", "College graduate/some post grad", "Postgraduate"],
                   [0.09, 0.27, 0.20, 0.10, 0.20, 0.14], None),
    "F_CREGION": ("Census region", ["Northeast", "Midwest", "South", "West"], [0.17, 0.21, 0.38, 0.24], None),
    "F_PARTY_FINAL": ("Party", ["Republican", "Democrat", "Independent", "Something else"],
                      [0.30, 0.33, 0.28, 0.09], {1: 1.0, 2: -1.0}),
    "F_IDEO": ("Ideology", ["Very conservative", "Conservative", "Moderate", "Liberal", "Very liberal"],
               None, {1: 1.0, 2: 0.5, 4: -0.5, 5: -1.0}),
    "F_INCOME": ("Family income", ["Less than $10,000", "$10,000 to less than $20,000",
                                   "$20,000 to less than $30,000", "$30,000 to less than $40,000",
                                   "$40,000 to less than $50,000", "$50,000 to less than $75,000",
                                   "$75,000 to less than $100,000", "$100,000 to less than $150,000",
                                   "$150,000 or more"], None, None),
    "F_RELIG": ("Religion", ["Protestant", "Roman Catholic", "Mormon (Church of Jesus Christ of Latter-day Saints)",
                             "Orthodox (such as Greek, Russian, or some other Orthodox church)", "Jewish", "Muslim",
                             "Buddhist", "Hindu", "Atheist", "Agnostic", "Other", "Nothing in particular"],
                [0.38, 0.20, 0.02, 0.01, 0.025, 0.02, 0.01, 0.02, 0.05, 0.055, 0.02, 0.19], None),
    "F_RACETHNMOD": ("Race/ethnicity", ["White non-Hispanic", "Black non-Hispanic", "Hispanic", "Other",
                                        "Asian non-Hispanic"], [0.62, 0.12, 0.16, 0.04, 0.06], None),
    "F_CITIZEN": ("U.S. citizen", ["Yes", "No"], [0.93, 0.07], None),
    "F_MARITAL": ("Marital status", ["Married", "Living with a partner", "Divorced", "Separated", "Widowed",
                                     "Never been married"], [0.50, 0.08, 0.11, 0.02, 0.06, 0.23], None),
    "F_ATTEND": ("Religious service attendance", ["More than once a week", "Once a week", "Once or twice a month",
                                                  "A few times a year", "Seldom", "Never"],
                 [0.06, 0.18, 0.10, 0.16, 0.24, 0.26], None),
}
# Rows: F_PARTY_FINAL code 1..4; columns: F_IDEO code 1..5 (Republicans mostly conservative, ...).
_IDEO_GIVEN_PARTY = [[0.30, 0.45, 0.20, 0.04, 0.01], [0.02, 0.08, 0.35, 0.38, 0.17],
                     [0.06, 0.22, 0.45, 0.19, 0.08], [0.08, 0.20, 0.40, 0.20, 0.12]]
# Rows: education tier (no degree / some college / college+); columns: F_INCOME code 1..9.
_INCOME_GIVEN_TIER = [[0.12, 0.14, 0.13, 0.12, 0.10, 0.17, 0.10, 0.08, 0.04],
                      [0.06, 0.08, 0.09, 0.10, 0.09, 0.19, 0.15, 0.15, 0.09],
                      [0.02, 0.03, 0.04, 0.05, 0.06, 0.14, 0.15, 0.23, 0.28]]
_EDUC_TIER = np.array([0, 0, 0, 1, 1, 2, 2])  # indexed by F_EDUCCAT2 code

_INCOME16_FLOORS = [0, 1000, 3000, 4000, 5000, 6000, 7000, 8000, 10000, 12500, 15000, 17500, 20000, 22500,
                    25000, 30000, 35000, 40000, 50000, 60000, 75000, 90000, 110000, 130000, 150000, 170000]
_RACEACS = ["white", "black or african american", "american indian or alaska native", "asian indian", "chinese",
            "filipino", "japanese", "korean", "vietnamese", "other asian", "native hawaiian",
            "guamanian or chamorro", "samoan", "other pacific islander", "some other race", "hispanic"]
_RELIG = ["protestant", "catholic", "jewish", "none", "other", "buddhism", "hinduism", "other eastern religions",
          "muslim/islam", "orthodox-christian", "christian", "native american", "inter-nondenominational"]
# GSS demographics: column -> (column label, {code: label}, lean or None); the sampler is gss_people.
GSS_DEMOGRAPHICS: dict[str, tuple[str, dict[int, str], dict[int, float] | None]] = {
    "region": ("region of interview", dict(enumerate(
        ["new england", "middle atlantic", "e. nor. central", "w. nor. central", "south atlantic",
         "e. sou. central", "w. sou. central", "mountain", "pacific"], start=1)), None),
    "educ": ("highest year of school completed", {y: f"{y} years" for y in range(21)}, None),
    "sexnow1": ("r's current gender", {1: "male", 2: "female", 3: "transgender"}, None),
    "polviews": ("think of self as liberal or conservative", dict(enumerate(
        ["extremely liberal", "liberal", "slightly liberal", "moderate, middle of the road",
         "slightly conservative", "conservative", "extremely conservative"], start=1)),
        {v: (v - 4) / 3 for v in range(1, 8)}),
    "income16": ("total family income", {i + 1: f"${lo:,} to {hi - 1:,}" for i, (lo, hi) in
                                         enumerate(zip(_INCOME16_FLOORS, _INCOME16_FLOORS[1:]))}
                 | {1: "under $1,000", 26: "$170,000 or over"}, None),
    "partyid": ("political party affiliation", dict(enumerate(
        ["strong democrat", "not very strong democrat", "independent, close to democrat",
         "independent (neither, no response)", "independent, close to republican",
         "not very strong republican", "strong republican", "other party"])),
        {v: (v - 3) / 3 for v in range(7)}),
    **{f"raceacs{k}": (f"r is {name}", {0: "not mentioned", 1: "mentioned"}, None)
       for k, name in enumerate(_RACEACS, start=1)},
    "relig": ("r's religious preference", dict(enumerate(_RELIG, start=1)), None),
}

# SubPOP's 22 groups (demographics_22.csv): (attribute, group) -> {column: codes}, a union over columns.
ATP_GROUPS: dict[tuple[str, str], dict[str, list[int]]] = {
    ("CREGION", "Northeast"): {"F_CREGION": [1]}, ("CREGION", "South"): {"F_CREGION": [3]},
    ("EDUCATION", "College graduate/some postgrad"): {"F_EDUCCAT2": [5]},
    ("EDUCATION", "Less than high school"): {"F_EDUCCAT2": [1]},
    ("SEX", "Male"): {"F_SEX": [1]}, ("SEX", "Female"): {"F_SEX": [2]}, ("POLIDEOLOGY", "Liberal"): {"F_IDEO": [4]},
    ("POLIDEOLOGY", "Conservative"): {"F_IDEO": [2]}, ("POLIDEOLOGY", "Moderate"): {"F_IDEO": [3]},
    ("INCOME", "$100,000 or more"): {"F_INCOME": [8, 9]}, ("INCOME", "Less than $30,000"): {"F_INCOME": [1, 2, 3]},
    ("POLPARTY", "Democrat"): {"F_PARTY_FINAL": [2]}, ("POLPARTY", "Republican"): {"F_PARTY_FINAL": [1]},
    ("RACE", "Black"): {"F_RACETHNMOD": [2]}, ("RACE", "White"): {"F_RACETHNMOD": [1]},
    ("RACE", "Asian"): {"F_RACETHNMOD": [5]}, ("RACE", "Hispanic"): {"F_RACETHNMOD": [3]},
    ("RELIG", "Protestant"): {"F_RELIG": [1]}, ("RELIG", "Jewish"): {"F_RELIG": [5]},
    ("RELIG", "Hindu"): {"F_RELIG": [8]}, ("RELIG", "Atheist"): {"F_RELIG": [9]}, ("RELIG", "Muslim"): {"F_RELIG": [6]},
}
GSS_GROUPS: dict[tuple[str, str], dict[str, list[int]]] = {
    ("CREGION", "Northeast"): {"region": [1, 2]}, ("CREGION", "South"): {"region": [5, 6, 7]},
    ("EDUCATION", "College graduate/some postgrad"): {"educ": list(range(16, 21))},
    ("EDUCATION", "Less than high school"): {"educ": list(range(12))},
    ("SEX", "Male"): {"sexnow1": [1]}, ("SEX", "Female"): {"sexnow1": [2]},
    ("POLIDEOLOGY", "Liberal"): {"polviews": [1, 2, 3]}, ("POLIDEOLOGY", "Conservative"): {"polviews": [5, 6, 7]},
    ("POLIDEOLOGY", "Moderate"): {"polviews": [4]}, ("INCOME", "$100,000 or more"): {"income16": list(range(22, 27))},
    ("INCOME", "Less than $30,000"): {"income16": list(range(1, 16))},
    ("POLPARTY", "Democrat"): {"partyid": [0, 1]}, ("POLPARTY", "Republican"): {"partyid": [5, 6]},
    ("RACE", "Black"): {"raceacs2": [1]}, ("RACE", "White"): {"raceacs1": [1]},
    ("RACE", "Asian"): {f"raceacs{k}": [1] for k in range(4, 11)}, ("RACE", "Hispanic"): {"raceacs16": [1]},
    ("RELIG", "Protestant"): {"relig": [1]}, ("RELIG", "Jewish"): {"relig": [3]},
    ("RELIG", "Hindu"): {"relig": [7]}, ("RELIG", "Atheist"): {"relig": [4]}, ("RELIG", "Muslim"): {"relig": [9]},
}

# Model attributes: (column, codes that carry an effect, lean). Other codes (refusals, NaN, 0 dummies) add nothing.
Attr = tuple[str, list[int], dict[int, float] | None]
ATP_ATTRS: list[Attr] = [(c, list(range(1, len(s[1]) + 1)), s[3]) for c, s in ATP_DEMOGRAPHICS.items()]
GSS_ATTRS: list[Attr] = [(c, [1] if c.startswith("raceacs") else list(s[1]), s[2])
                           for c, s in GSS_DEMOGRAPHICS.items()]


def _draw(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category index per row of ``probs`` (rows need not be normalised)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(cum)) * cum[:, -1]
    return (u[:, None] >= cum).sum(axis=1)


def _categorical(rng: np.random.Generator, p: list[float], n: int) -> np.ndarray:
    return _draw(rng, np.tile(np.asarray(p, float), (n, 1)))


def atp_people(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """ATP demographic codes (1..n, 99 = refused) for ``n`` people of the population model."""
    cols: dict[str, np.ndarray] = {}
    for column, (_, _, marginal, _) in ATP_DEMOGRAPHICS.items():
        if marginal is not None:
            cols[column] = _categorical(rng, marginal, n) + 1
    cols["F_IDEO"] = _draw(rng, np.asarray(_IDEO_GIVEN_PARTY)[cols["F_PARTY_FINAL"] - 1]) + 1
    cols["F_INCOME"] = _draw(rng, np.asarray(_INCOME_GIVEN_TIER)[_EDUC_TIER[cols["F_EDUCCAT2"]]]) + 1
    people = pd.DataFrame({c: cols[c].astype(float) for c in ATP_DEMOGRAPHICS})
    # Refusals come last so they do not disturb the conditional draws above.
    for column in people:
        people.loc[rng.random(n) < DEMOGRAPHIC_REFUSE_P, column] = REFUSED
    return people


def gss_people(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """GSS demographics for ``n`` people; refusals are missing (NaN), as in the GSS."""
    cols: dict[str, np.ndarray] = {
        "region": _categorical(rng, [0.05, 0.13, 0.15, 0.07, 0.20, 0.06, 0.12, 0.07, 0.15], n) + 1,
        "educ": _categorical(rng, [0.003] * 9 + [0.02, 0.025, 0.035, 0.30, 0.08, 0.12, 0.05, 0.17, 0.04,
                                                  0.06, 0.02, 0.03], n),
        "sexnow1": _categorical(rng, [0.47, 0.525, 0.005], n) + 1,
        "partyid": _categorical(rng, [0.14, 0.12, 0.12, 0.18, 0.09, 0.12, 0.11, 0.03], n),
    }
    lean = np.where(cols["partyid"] == 7, 0.0, (cols["partyid"] - 3) / 3)
    cols["polviews"] = np.clip(np.rint(4 + 1.8 * lean + rng.normal(0, 1.2, n)), 1, 7)
    cols["income16"] = np.clip(np.rint(18 + 0.7 * (cols["educ"] - 13) + rng.normal(0, 5, n)), 1, 26)
    # Multi-select race: one main answer, then realistic overlaps (many Hispanics also say white).
    race = np.zeros((n, 16))
    main = _categorical(rng, [0.62, 0.13, 0.16, 0.06, 0.03], n)  # white, black, hispanic, asian, other
    asian_k = rng.integers(4, 11, n)
    for who, k in [(0, 1), (1, 2), (2, 16), (4, 15)]:
        race[main == who, k - 1] = 1
    race[main == 3, asian_k[main == 3] - 1] = 1
    for who, k, p in [(2, 1, 0.5), (0, 3, 0.03), (1, 1, 0.04)]:  # main answer, extra dummy, how often
        race[(main == who) & (rng.random(n) < p), k - 1] = 1
    cols |= {f"raceacs{k}": race[:, k - 1] for k in range(1, 17)}
    cols["relig"] = _categorical(rng, [0.38, 0.20, 0.025, 0.23, 0.01, 0.01, 0.02, 0.005, 0.02, 0.01, 0.06,
                                       0.005, 0.005], n) + 1
    people = pd.DataFrame({c: np.asarray(cols[c], float) for c in GSS_DEMOGRAPHICS})
    # Nonresponse: each variable is missing for ~1%; the race dummies go missing together.
    for block in [[c] for c in people if not c.startswith("raceacs")] + [[f"raceacs{k}" for k in range(1, 17)]]:
        people.loc[rng.random(n) < DEMOGRAPHIC_REFUSE_P, block] = np.nan
    return people
