"""Distributions -> SubPOP's fine-tuning rows: steered prompts and target distributions, split by question.

Follows ``scripts/data_generation/prepare_finetuning_data.py``
(``reference/subpop.md`` §2.5-2.6):

1. questions (not rows) are split into train / val / test, so every group of
   a question lands in the same split;
2. each (question, group) row becomes one fine-tuning row per steering
   template (three for ``ALL``): ``input_prompt`` is the steered MCQ and
   ``output_dist`` is ``responses + [refusal_rate]``, *not* renormalised (it
   sums to 1 + refusal_rate; SubPOP's loss pads and uses it as is);
3. each split is row-shuffled with ``df.sample(frac=1, random_state=seed)``.

One deliberate difference: SubPOP shuffles question keys in CSV order, which
is non-deterministic for SubPOP-Train; we sort them first, so the same
distributions give the same split whatever their row order.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from demoscope.errors import ConfigError, SurveyFormatError
from demoscope.surveys.prompts import SteeringType, generate_mcq, load_steering_prompts, steering_group, steering_prefix

SPLITS = ("train", "val", "test")
OUTPUT_COLUMNS = ["qkey", "input_prompt", "output_dist", "attribute", "group", "ordinal"]
REQUIRED_COLUMNS = ["qkey", "attribute", "group", "question", "options", "responses", "refusal_rate", "ordinal"]
MAX_OPTIONS = 10  # SubPOP's trainer scores the letters A..J only


def check_ratios(train_ratio: float, val_ratio: float, test_ratio: float) -> None:
    """Raise :class:`ConfigError` unless the three ratios are >= 0 and sum to 1."""
    ratios = {"train_ratio": train_ratio, "val_ratio": val_ratio, "test_ratio": test_ratio}
    negative = [f"{name}={value}" for name, value in ratios.items() if value < 0]
    if negative:
        raise ConfigError(f"split ratios must be >= 0, got {', '.join(negative)}")
    total = sum(ratios.values())
    if abs(total - 1.0) > 1e-6:
        given = ", ".join(f"{name}={value}" for name, value in ratios.items())
        raise ConfigError(f"split ratios must sum to 1, got {given} (sum {total:g})")


def split_questions(
    qkeys: Iterable[str], train_ratio: float, val_ratio: float, test_ratio: float, seed: int = 42
) -> dict[str, list[str]]:
    """Assign each unique question key to ``train``, ``val`` or ``test``.

    Keys are deduplicated and sorted, then shuffled with
    ``np.random.RandomState(seed)`` (the same stream as SubPOP's
    ``np.random.seed(seed); np.random.shuffle``). The first
    ``round(train_ratio*N)`` go to train, the next ``round(val_ratio*N)`` to
    val, the rest to test; as in SubPOP, rounding can leave a question in test
    even when ``test_ratio`` is 0.
    """
    check_ratios(train_ratio, val_ratio, test_ratio)
    keys = np.array(sorted(set(qkeys)), dtype=object)
    np.random.RandomState(seed).shuffle(keys)
    n_train = int(round(train_ratio * len(keys)))
    n_val = int(round(val_ratio * len(keys)))
    return {
        "train": keys[:n_train].tolist(),
        "val": keys[n_train:n_train + n_val].tolist(),
        "test": keys[n_train + n_val:].tolist(),
    }


def _where(frame: pd.DataFrame, mask: pd.Series) -> str:
    row = frame[mask].iloc[0]
    more = int(mask.sum()) - 1
    return f"question {row['qkey']!r}, group {row['group']!r}" + (f" (and {more} more row(s))" if more else "")


def screen_distributions(distributions: pd.DataFrame, source: str = "distributions") -> tuple[pd.DataFrame, list[str]]:
    """Check distribution rows before rendering; return ``(usable rows, skipped-question messages)``.

    Malformed rows (missing columns, ``options`` not one longer than
    ``responses``, a missing refusal rate) raise :class:`SurveyFormatError`
    naming the question. Questions with more than 10 options cannot be
    answered with SubPOP's letters A..J: they are dropped and reported.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in distributions.columns]
    if missing:
        raise SurveyFormatError(source, f"lacks column(s) {missing}; expected {', '.join(REQUIRED_COLUMNS)}")
    n_options = distributions["options"].map(len)
    bad = n_options != distributions["responses"].map(len) + 1
    if bad.any():
        row = distributions[bad].iloc[0]
        raise SurveyFormatError(
            source, f"{_where(distributions, bad)}: {len(row['options'])} options but {len(row['responses'])} responses "
            "(expected one option more than responses: the last option is the refusal)"
        )
    no_refusal = distributions["refusal_rate"].isna()
    if no_refusal.any():
        raise SurveyFormatError(source, f"{_where(distributions, no_refusal)}: refusal_rate is missing")
    too_many = n_options > MAX_OPTIONS
    skipped = [
        f"question {qkey!r} has {count} options, more than the {MAX_OPTIONS} answer letters (A..J) SubPOP's trainer scores"
        for qkey, count in distributions[too_many].groupby("qkey", sort=True)["options"].first().map(len).items()
    ]
    return distributions[~too_many], skipped


def build_finetuning_frame(
    distributions: pd.DataFrame, steering: SteeringType | str, seed: int = 42, shuffle: bool = True
) -> pd.DataFrame:
    """Turn distribution rows into fine-tuning rows with columns :data:`OUTPUT_COLUMNS`.

    One row per (question, group) and steering template: ``ALL`` gives three
    (BIO, QA, PORTRAY). ``group`` holds the steering-prompt string
    (OpinionQA's ``Yes``/``No``/``Never been married``/``Other`` are mapped);
    ``output_dist`` is ``responses + [refusal_rate]``; ``ordinal`` is a list.
    Rows are sorted by (qkey, attribute, group), then shuffled with
    ``random_state=seed`` unless ``shuffle`` is false. A group without a
    steering prompt raises :class:`SpecError`; rows that
    :func:`screen_distributions` would reject or skip raise
    :class:`SurveyFormatError`.
    """
    try:
        kinds = SteeringType(steering).kinds
    except ValueError:
        valid = ", ".join(t.value for t in SteeringType)
        raise ConfigError(f"unknown steering type {steering!r}; expected one of {valid}") from None
    usable, skipped = screen_distributions(distributions)
    if skipped:
        raise SurveyFormatError("distributions", f"{skipped[0]}; drop such questions first (screen_distributions does)")
    if usable.empty:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in OUTPUT_COLUMNS})
    rows = usable.sort_values(["qkey", "attribute", "group"], kind="stable")
    attributes = rows["attribute"].tolist()
    # .tolist() first: iterating Arrow-backed string columns element by element is slow
    groups = [steering_group(a, g) for a, g in zip(attributes, rows["group"].tolist())]
    # Few distinct MCQs (one per question) and steering prefixes (kinds x groups)
    # exist: each is rendered once and a prompt is one concatenation.
    mcqs: dict[tuple[str, tuple[str, ...]], str] = {}
    row_mcqs = []
    for question, options in zip(rows["question"].tolist(), rows["options"]):
        key = (question, tuple(options))
        if key not in mcqs:
            mcqs[key] = generate_mcq(question, list(options), add_answer_forcing=True)
        row_mcqs.append(mcqs[key])
    prompts = load_steering_prompts()
    pairs = dict.fromkeys(zip(attributes, groups))  # unique, in row order (so the first bad group is reported)
    prefixes = {(kind, a, g): steering_prefix(kind, a, g, prompts) for a, g in pairs for kind in kinds}
    dists = [[float(x) for x in r] + [float(f)] for r, f in zip(rows["responses"], rows["refusal_rate"])]
    ordinals = [[float(x) for x in o] for o in rows["ordinal"]]
    out = {  # ALL: the kinds of one (question, group) are adjacent, as in SubPOP's inner loop
        "qkey": [q for q in rows["qkey"].tolist() for _ in kinds],
        "input_prompt": [prefixes[kind, a, g] + m for a, g, m in zip(attributes, groups, row_mcqs) for kind in kinds],
        "output_dist": [list(d) for d in dists for _ in kinds],
        "attribute": [a for a in attributes for _ in kinds],
        "group": [g for g in groups for _ in kinds],
        "ordinal": [list(o) for o in ordinals for _ in kinds],
    }
    frame = pd.DataFrame(out, columns=OUTPUT_COLUMNS)
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True) if shuffle else frame


def prepare_splits(
    distributions: pd.DataFrame,
    steering: SteeringType | str,
    ratios: tuple[float, float, float] = (0.9, 0.1, 0.0),
    seed: int = 42,
    shuffle: bool = True,
) -> dict[str, pd.DataFrame]:
    """Split ``distributions`` by question and build each split's fine-tuning frame.

    ``ratios`` is ``(train, val, test)``. Returns ``{"train", "val", "test"}``
    frames; an empty split is an empty frame with the output columns. Run
    :func:`screen_distributions` first to drop questions with over 10 options.
    """
    keys = split_questions(distributions["qkey"], *ratios, seed=seed)
    return {
        name: build_finetuning_frame(distributions[distributions["qkey"].isin(keys[name])], steering, seed, shuffle)
        for name in SPLITS
    }
