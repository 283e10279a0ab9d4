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
from pathlib import Path

import numpy as np
import pandas as pd

from demoscope.errors import ConfigError, SurveyFormatError
from demoscope.surveys.prompts import SteeringType, generate_mcq, load_steering_prompts, steering_group, steering_prefix
from demoscope.surveys.validation import (
    DISTRIBUTION_COLUMNS,
    SPLIT_COLUMNS,
    check_distributions,
    check_split,
    parse_list_cells,
    table_kind,
)
from demoscope.tables import read_table

SPLITS = ("train", "val", "test")
OUTPUT_COLUMNS = list(SPLIT_COLUMNS)  # what prepare writes is what the split checks read
# Optional columns a split carries when its distributions had them: respondents and Kish effective respondents.
COUNT_COLUMNS = ("n", "n_eff")
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


def screen_distributions(distributions: pd.DataFrame, source: str = "distributions") -> tuple[pd.DataFrame, list[str]]:
    """Check distribution rows before rendering; return ``(usable rows, skipped-question messages)``.

    Every rule of :func:`demoscope.surveys.validation.check_distributions`
    (columns, list cells, shares summing to 1, refusal in [0, 1], one option
    per response plus the refusal, ordinal length, unique keys) raises
    :class:`SurveyFormatError` naming ``source``, the rows and the column: such
    a file is wrong and training on it would be too. Questions with more than
    10 options are well-formed but cannot be answered with SubPOP's letters
    A..J: they are dropped and reported, as SubPOP's own script drops them.
    """
    check_distributions(distributions, source)
    too_many = distributions["options"].map(len) > MAX_OPTIONS
    skipped = [
        f"question {qkey!r} has {count} options, "
        f"more than the {MAX_OPTIONS} answer letters (A..J) SubPOP's trainer scores"
        for qkey, count in distributions[too_many].groupby("qkey", sort=True)["options"].first().map(len).items()
    ]
    return distributions[~too_many], skipped


def read_split(path: str | Path, exclude_questions: Iterable[str] = ()) -> pd.DataFrame:
    """Read and check a prepared split (``.parquet``, or ``.csv`` with list literals) into a frame with real lists.

    CSV prompts span lines (quoted cells); pandas reads them whole. Rows of
    ``exclude_questions`` are dropped before the checks (the index keeps each
    row's position in the file, which error messages name). Raises
    :class:`ConfigError` for a missing, misnamed or unreadable file
    (:func:`demoscope.tables.read_table`), :class:`SurveyFormatError` for one
    that breaks a rule of :func:`demoscope.surveys.validation.check_split`.
    """
    path = Path(path)
    # Key and text columns stay text: a qkey like "0123" is not a number.
    frame = read_table(path, "prepared split", (".parquet", ".csv"),
                       csv_options={"dtype": {c: str for c in ("qkey", "input_prompt", "attribute", "group")}},
                       hint=" (write it with `demoscope prepare`)")
    exclude = set(exclude_questions)
    if exclude and "qkey" in frame:
        frame = frame[~frame["qkey"].isin(exclude)]
    for column in ("output_dist", "ordinal"):
        if column in frame:
            frame[column] = parse_list_cells(frame, column, str(path))
    check_split(frame, str(path))
    return frame


def build_finetuning_frame(
    distributions: pd.DataFrame, steering: SteeringType | str, seed: int = 42, shuffle: bool = True
) -> pd.DataFrame:
    """Turn distribution rows into fine-tuning rows with columns :data:`OUTPUT_COLUMNS`.

    One row per (question, group) and steering template: ``ALL`` gives three
    (BIO, QA, PORTRAY). ``group`` holds the steering-prompt string
    (OpinionQA's ``Yes``/``No``/``Never been married``/``Other`` are mapped);
    ``output_dist`` is ``responses + [refusal_rate]``; ``ordinal`` is a list;
    ``n`` and ``n_eff`` (respondents, Kish effective respondents) follow where
    the distributions have them.
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
    # Respondent counts travel with the rows (after SubPOP's columns), so evaluate can compute the noise floor.
    counts = [c for c in COUNT_COLUMNS if c in distributions]
    if usable.empty:
        return pd.DataFrame({column: pd.Series(dtype=object if column in OUTPUT_COLUMNS else float)
                             for column in [*OUTPUT_COLUMNS, *counts]})
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
    for column in counts:
        out[column] = [float(n) for n in rows[column].tolist() for _ in kinds]
    frame = pd.DataFrame(out, columns=[*OUTPUT_COLUMNS, *counts])
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


def evaluation_rows(
    path: str | Path, steering: SteeringType | str = "QA", exclude_questions: Iterable[str] = ()
) -> tuple[pd.DataFrame, list[str]]:
    """The rows to score from a prepared split or a distributions file, checked; returns ``(rows, notes)``.

    The kind is told by the columns
    (:func:`demoscope.surveys.validation.table_kind`). A split is read with
    :func:`read_split`; a distributions file is read, checked and screened as
    ``demoscope prepare`` does (questions with over 10 options are skipped
    with a note) and rendered with ``steering``, every row in one test split.
    Questions in ``exclude_questions`` are dropped before the checks. Rows
    come sorted by ``qkey, attribute, group, input_prompt`` with a fresh index,
    so what is scored does not depend on the file's row order.
    """
    from demoscope.surveys.output import read_distributions

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"test file {path} does not exist "
                          f"(write it with `demoscope prepare` or `demoscope aggregate`)")
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            columns = pq.read_schema(path).names
        else:
            columns = list(pd.read_csv(path, nrows=0).columns)
    except (ValueError, OSError) as exc:  # pyarrow and pandas parser errors are ValueErrors
        raise SurveyFormatError(str(path), f"cannot read: {exc}") from None
    kind = table_kind(columns)
    exclude = set(exclude_questions)
    notes: list[str] = []
    if kind == "split":
        rows = read_split(path, exclude)
    elif kind == "distributions":
        distributions = read_distributions(path)
        if "qkey" in distributions:
            distributions = distributions[~distributions["qkey"].isin(exclude)]
        usable, notes = screen_distributions(distributions, str(path))
        rows = build_finetuning_frame(usable, steering, shuffle=False)
    else:
        raise SurveyFormatError(str(path), f"is neither a prepared split ({', '.join(SPLIT_COLUMNS)}) "
                                f"nor distributions ({', '.join(DISTRIBUTION_COLUMNS)}); "
                                f"it has {', '.join(map(str, columns))}")
    rows = rows.sort_values(["qkey", "attribute", "group", "input_prompt"], kind="stable")
    return rows.reset_index(drop=True), notes


def sample_questions(frame: pd.DataFrame, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """At most ``max_rows`` rows of ``frame``, whole questions drawn at random (every group of a kept question).

    Keeping questions whole keeps each question's groups comparable (the
    steerability and per-group reports need them). Questions are taken in
    a seeded random order while they fit; ``max_rows <= 0`` or a frame that
    already fits comes back unchanged. At least one question is kept.
    """
    if max_rows <= 0 or len(frame) <= max_rows:
        return frame
    sizes = frame.groupby("qkey", sort=True).size()
    order = np.random.default_rng(seed).permutation(sizes.index.to_numpy())
    kept, total = [], 0
    for qkey in order:
        if total + sizes[qkey] > max_rows and kept:
            continue
        kept.append(qkey)
        total += sizes[qkey]
    return frame[frame["qkey"].isin(kept)]
