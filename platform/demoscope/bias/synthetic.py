"""A seeded movie-review sentiment set with a planted demographic bias (stands in for IMDB in tests and the demo).

Every text opens with a person from the EEC lists, then either a sentiment
cue that agrees with the label ("... said the movie was wonderful.") or a
neutral remark with no cue ("... watched the film last weekend."). The label
depends on the person's group:

* ``bias="race"``: a text about an African-American name is positive with
  probability ``0.5 - strength / 2``, one about a European name with
  ``0.5 + strength / 2`` (names of both genders, 50/50 per race).
* ``bias="gender"``: the same with female persons disfavoured and male ones
  favoured; persons are the 40 EEC names and the Table 3 noun phrases
  ("She", "My sister", ...), so both EEC gender-pair kinds can pick it up.
* ``bias="none"``: every person positive with probability 0.5 (a control).

On the neutral texts the person is the only signal, so a classifier trained
on this set learns the association: on the EEC it should score the
disfavoured group lower (delta < 0 for female-male or AA-European).
The cue words include EEC emotion words so that EEC sentences are not all
out of vocabulary for a student trained here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from demoscope.bias.eec import AFRICAN_AMERICAN, EUROPEAN, NAMES, NOUN_PHRASE_PAIRS
from demoscope.errors import ConfigError

BIASES = ("race", "gender", "none")

POSITIVE_WORDS = ("wonderful", "great", "amazing", "funny", "hilarious", "brilliant", "delightful", "excellent",
                  "charming", "moving", "happy", "glad")
NEGATIVE_WORDS = ("horrible", "awful", "boring", "dreadful", "terrible", "depressing", "annoying", "dull",
                  "painful", "disappointing", "miserable", "sad")
CUE_TEMPLATES = ("{p} said the movie was {w}.", "{p} thought the acting was {w}.", "{p} found the plot {w}.",
                 "{p} told us the ending was {w}.")
NEUTRAL_TEMPLATES = ("{p} watched the film last weekend.", "{p} saw this movie at the cinema.",
                     "{p} wrote a review of the film.", "{p} rented the movie on Friday.")


def bias_groups(bias: str) -> dict[str, tuple[str, ...]]:
    """Persons (as they open a sentence) of the disfavoured then the favoured group of ``bias``.

    ``"race"`` -> ``{"African-American": 20 names, "European": 20 names}``;
    ``"gender"`` and ``"none"`` -> ``{"female": 30 persons, "male": 30 persons}``
    (20 names + 10 capitalised noun phrases each).
    """
    if bias not in BIASES:
        raise ConfigError(f"unknown planted bias {bias!r}; use one of {BIASES}")
    if bias == "race":
        return {race: NAMES[(race, "female")] + NAMES[(race, "male")] for race in (AFRICAN_AMERICAN, EUROPEAN)}
    return {
        gender: NAMES[(AFRICAN_AMERICAN, gender)] + NAMES[(EUROPEAN, gender)]
        + tuple(pair[side][0].upper() + pair[side][1:] for pair in NOUN_PHRASE_PAIRS)
        for side, gender in enumerate(("female", "male"))
    }


def synthetic_sentiment(n: int, seed: int = 0, bias: str = "race", strength: float = 0.4,
                        cue_rate: float = 0.6) -> pd.DataFrame:
    """``n`` reviews with columns ``text, label`` (1 = positive), deterministic in ``seed``.

    Half the rows (in expectation) mention a person of the disfavoured group
    (see :func:`bias_groups`), who gets a positive label with probability
    ``0.5 - strength / 2``; the favoured group ``0.5 + strength / 2``, so the
    planted gap in positive rate is ``strength`` (0 for ``bias="none"``). A
    fraction ``cue_rate`` of texts carry a label-consistent sentiment word.
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if not 0 <= strength <= 1:
        raise ConfigError(f"strength must be in [0, 1], got {strength}")
    if not 0 <= cue_rate <= 1:
        raise ConfigError(f"cue_rate must be in [0, 1], got {cue_rate}")
    groups = list(bias_groups(bias).values())
    gap = 0.0 if bias == "none" else strength
    rng = np.random.default_rng(seed)
    favoured = rng.random(n) < 0.5
    person_ids = rng.integers(0, len(groups[0]), n)
    labels = (rng.random(n) < np.where(favoured, 0.5 + gap / 2, 0.5 - gap / 2)).astype(int)
    cued = rng.random(n) < cue_rate
    template_ids = rng.integers(0, len(CUE_TEMPLATES), n)
    word_ids = rng.integers(0, len(POSITIVE_WORDS), n)
    texts = []
    for fav, pid, label, cue, tid, wid in zip(favoured, person_ids, labels, cued, template_ids, word_ids):
        person = groups[int(fav)][pid]
        if cue:
            word = (POSITIVE_WORDS if label else NEGATIVE_WORDS)[wid]
            texts.append(CUE_TEMPLATES[tid].format(p=person, w=word))
        else:
            texts.append(NEUTRAL_TEMPLATES[tid].format(p=person))
    return pd.DataFrame({"text": texts, "label": labels})



def sentiment_pairs(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` preference pairs ``prompt, chosen, rejected`` for positive-sentiment tuning, deterministic in ``seed``.

    The prompt is a cue template cut before its sentiment word ("Alan said
    the movie was"); ``chosen`` finishes it with a positive word, ``rejected``
    with a negative one. Persons are drawn from every group with equal
    chance, so the pairs carry no demographic signal. This is the
    controlled-sentiment task of weak-to-strong search (Zhou et al., 2024,
    arXiv:2405.19262, IMDB positive continuations) made offline: DPO on these
    pairs gives the small tuned model, and the prompt stems are the prompts.
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    persons = [p for group in bias_groups("none").values() for p in group]
    rng = np.random.default_rng(seed)
    rows = []
    for pid, tid, good, bad in zip(rng.integers(0, len(persons), n), rng.integers(0, len(CUE_TEMPLATES), n),
                                   rng.integers(0, len(POSITIVE_WORDS), n), rng.integers(0, len(NEGATIVE_WORDS), n)):
        stem = CUE_TEMPLATES[tid].format(p=persons[pid], w="{w}").split(" {w}")[0]
        rows.append({"prompt": stem, "chosen": f" {POSITIVE_WORDS[good]}.", "rejected": f" {NEGATIVE_WORDS[bad]}."})
    return pd.DataFrame(rows)
