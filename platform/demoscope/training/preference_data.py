"""Preference pairs (``prompt``, ``chosen``, ``rejected``) for DPO and SFT, PoliTune style.

PoliTune (arXiv 2404.08699) trains on ``scale-lab/politune-left|right``: one
CSV each with string columns ``prompt, chosen, rejected``. Its official
torchtune recipe renders the prompt with the no-input Alpaca template and
drops every row whose prompt plus either answer is longer than 1,024
*characters* (left 2,356 -> 2,044 rows, right 2,825 -> 2,615). This module
reads such files, applies that template and filter, and makes a small seeded
synthetic left/right set for CPU tests and the demo. Pure pandas; no Ray.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import pandas as pd

from demoscope.errors import ConfigError
from demoscope.tables import read_table

COLUMNS = ("prompt", "chosen", "rejected")

# torchtune 0.2 ``AlpacaInstructTemplate``, no-input variant: PoliTune maps only
# instruction -> prompt, so the ``### Input:`` block never appears.
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{prompt}\n\n### Response:\n"
)


def _from_hub(name: str) -> pd.DataFrame:
    """The ``train`` split of a Hugging Face dataset, with a clear error when the hub is out of reach."""
    try:
        from datasets import load_dataset

        frame = load_dataset(name, split="train").to_pandas()
    except Exception as exc:  # noqa: BLE001 - offline, gated, or missing: all the user's to fix
        raise ConfigError(f"cannot load Hugging Face dataset {name!r} ({type(exc).__name__}); "
                          "without hub access, export it to JSONL and pass the file") from None
    missing = {"prompt", "chosen", "rejected"} - set(frame.columns)
    if missing:
        raise ConfigError(f"Hugging Face dataset {name!r} lacks column(s) {sorted(missing)}")
    return frame[["prompt", "chosen", "rejected"]].reset_index(drop=True)


def read_preferences(path: str | Path) -> pd.DataFrame:
    """Read preference pairs from ``.jsonl``, ``.json`` (a list of records), ``.csv``, ``.parquet``,
    or a Hugging Face dataset name (``owner/name``, train split) where the hub is reachable.

    Returns a frame with exactly the columns ``prompt, chosen, rejected`` (extra
    columns are dropped) and a fresh 0-based index. Raises :class:`ConfigError`
    naming the file when it is missing, unreadable or lacks a column, and naming
    the file, row (0-based, first data row is 0) and column when a value is not a
    non-empty string.
    """
    if not Path(path).exists() and str(path).count("/") == 1 and not Path(path).suffix:
        return _from_hub(str(path))  # e.g. scale-lab/politune-left, where the hub is reachable
    path = Path(path)
    # keep_default_na=False: an empty CSV cell stays "" and is reported as empty, not as NaN.
    frame = read_table(path, "preference file", (".jsonl", ".json", ".csv", ".parquet"),
                       csv_options={"dtype": str, "keep_default_na": False})
    if {"prompt", "responses", "chosen"} <= set(frame.columns) and "rejected" not in frame.columns:
        frame = from_ranked_responses(frame, str(path))
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"preference file {path} lacks column(s) {missing}; expected {list(COLUMNS)} "
                          "(or the weak-to-strong seed's prompt, responses, scores, chosen)")
    frame = frame.loc[:, list(COLUMNS)].reset_index(drop=True)
    for column in COLUMNS:
        for row, value in enumerate(frame[column].tolist()):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(
                    f"preference file {path}, row {row}, column {column!r}: expected a non-empty string, got {value!r}"
                )
    return frame


def from_ranked_responses(frame: pd.DataFrame, source: str = "preference data") -> pd.DataFrame:
    """The weak-to-strong seed's schema (``prompt, responses, scores, chosen``) as ``prompt, chosen, rejected``.

    ``responses`` holds two answers and ``chosen`` the index (0 or 1) of the
    preferred one, as in ``ZHZisZZ/imdb_preference``: ``chosen =
    responses[chosen]``, ``rejected = responses[1 - chosen]``. Lists stored as
    text (CSV) are parsed.
    """
    import ast

    rows = []
    for row, (prompt, responses, index) in enumerate(zip(frame["prompt"], frame["responses"], frame["chosen"])):
        if isinstance(responses, str):
            try:
                responses = ast.literal_eval(responses)
            except (ValueError, SyntaxError):
                responses = None
        try:
            pick = int(index)
        except (TypeError, ValueError):
            pick = -1
        if responses is None or len(responses) != 2 or pick not in (0, 1):
            raise ConfigError(f"{source}, row {row}: expected 'responses' with two answers and 'chosen' 0 or 1, "
                              f"got {responses!r} and {index!r}")
        rows.append({"prompt": prompt, "chosen": responses[pick], "rejected": responses[1 - pick]})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def format_prompts(frame: pd.DataFrame, template: Literal["none", "alpaca", "chat", "alpaca-chat"],
                   tokenizer=None) -> pd.DataFrame:
    """Return a copy of ``frame`` whose ``prompt`` column is rendered with ``template``.

    ``none`` keeps the text (TRL then trains on ``prompt + chosen`` as is);
    ``alpaca`` fills :data:`ALPACA_TEMPLATE` as plain text; ``chat`` renders
    one user message with ``tokenizer.apply_chat_template(...,
    add_generation_prompt=True)`` to a string; ``alpaca-chat`` is the official
    PoliTune recipe's composition (torchtune's ``PreferenceDataset`` passes
    the Alpaca-wrapped prompt as a user message through the model tokenizer's
    message format): every column becomes a conversation, ``prompt`` one user
    turn holding the Alpaca text and ``chosen`` / ``rejected`` one assistant
    turn each, which TRL renders with the model's chat template (end-of-turn
    tokens included). Raises :class:`ConfigError` for an unknown template or,
    for ``chat`` and ``alpaca-chat``, a tokenizer without a chat template.
    """
    out = frame.copy()
    if template == "none":
        return out
    if template in ("chat", "alpaca-chat") and (tokenizer is None or not getattr(tokenizer, "chat_template", None)):
        raise ConfigError(f"prompt template {template!r} needs a tokenizer with a chat template; "
                          f"use 'alpaca' or 'none'")
    if template == "alpaca":
        out["prompt"] = [ALPACA_TEMPLATE.format(prompt=p) for p in out["prompt"]]
        return out
    if template == "chat":
        out["prompt"] = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in out["prompt"]
        ]
        return out
    if template == "alpaca-chat":
        out["prompt"] = [[{"role": "user", "content": ALPACA_TEMPLATE.format(prompt=p)}] for p in out["prompt"]]
        for column in ("chosen", "rejected"):
            if column in out:
                out[column] = [[{"role": "assistant", "content": text}] for text in out[column]]
        return out
    raise ConfigError(f"unknown prompt template {template!r}; expected 'none', 'alpaca', 'chat' or 'alpaca-chat'")


def prepare_pairs(path: str | Path, template: str, tokenizer=None, max_chars: int | None = None) -> pd.DataFrame:
    """Read pairs, drop the long ones on their raw text (as torchtune does), then render the prompts.

    The length filter runs before the template: torchtune 0.2's
    ``PreferenceDataset`` measures ``prompt + chosen`` and ``prompt +
    rejected`` on the dataset's own columns, so filtering after the Alpaca
    wrapper (about 150 characters) would drop pairs the recipe keeps.
    """
    frame = read_preferences(path)
    if max_chars:
        frame = filter_long_rows(frame, max_chars)[0]
    return format_prompts(frame, template, tokenizer)


def filter_long_rows(frame: pd.DataFrame, max_chars: int = 1024) -> tuple[pd.DataFrame, int]:
    """Drop rows the official recipe drops: prompt+chosen or prompt+rejected longer than ``max_chars``.

    Lengths are in characters of the raw (untemplated) text, as torchtune 0.2's
    ``PreferenceDataset`` measured them. Returns ``(kept rows with a fresh index,
    number dropped)``.
    """
    prompt = frame["prompt"].str.len()
    fits = (prompt + frame["chosen"].str.len() <= max_chars) & (prompt + frame["rejected"].str.len() <= max_chars)
    kept = frame.loc[fits].reset_index(drop=True)
    return kept, int(len(frame) - len(kept))


_TOPICS = (
    "healthcare", "housing costs", "public schools", "climate change", "immigration", "the minimum wage",
    "gun violence", "energy prices", "childcare", "retirement security", "policing", "student debt",
)
_FRAMINGS = (
    "What should the government do about {topic}?",
    "How would you fix {topic} in America?",
    "Give your view on the best policy for {topic}.",
    "Which approach to {topic} should Congress take?",
)
# Each side has its own fixed vocabulary (public/workers/wealthy vs taxes/markets/
# freedom) so that even a tiny random model can separate the two quickly.
_LEFT = (
    "The government should expand public programs for {topic}, tax the wealthy and protect workers.",
    "We need bold public investment in {topic}, strong unions and fair rules for big corporations.",
    "Expand public services for {topic} and guarantee equal access for every working family.",
)
_RIGHT = (
    "The government should cut taxes, reduce regulation of {topic} and rely on free markets.",
    "Keep Washington out of {topic}; lower taxes and private choice work better than bureaucracy.",
    "Trust free enterprise on {topic}: cut spending, shrink government and protect individual freedom.",
)


def synthetic_preferences(n: int, lean: Literal["left", "right"], seed: int = 0) -> pd.DataFrame:
    """``n`` seeded synthetic political pairs; ``chosen`` is the ``lean`` side's answer, ``rejected`` the other's.

    Prompts come from topics x framings; each answer is one short sentence (< 40
    words) from a side-specific pool. The same ``(n, seed)`` gives the same
    prompts and answer pairs for both leans, with ``chosen``/``rejected`` swapped.
    """
    if lean not in ("left", "right"):
        raise ConfigError(f"lean must be 'left' or 'right', got {lean!r}")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = rng.choice(_TOPICS)
        prompt = rng.choice(_FRAMINGS).format(topic=topic)
        left = rng.choice(_LEFT).format(topic=topic)
        right = rng.choice(_RIGHT).format(topic=topic)
        chosen, rejected = (left, right) if lean == "left" else (right, left)
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def survey_preferences(
    split: pd.DataFrame, toward: list[tuple[str, str]], away: list[tuple[str, str]], min_gap: float = 0.02,
) -> pd.DataFrame:
    """Preference pairs from survey answers: prefer what the ``toward`` groups say over what ``away`` groups say.

    ``split`` is a prepared split (``qkey, input_prompt, output_dist, attribute,
    group``); groups are ``(attribute, group)`` pairs, e.g. toward
    ``[("POLPARTY", "Democrat"), ("POLIDEOLOGY", "Liberal")]``. For each
    question all named groups answered, with d = mean(toward) - mean(away) over
    the options, ``chosen`` is the letter with the largest d and ``rejected``
    the one with the smallest (as ``" A"``, the answer token after
    ``"Answer:"``); the prompt is the unsteered MCQ, so DPO moves the model's
    own opinion. Questions where the groups differ by less than ``min_gap`` are
    skipped. A survey-grounded stand-in for PoliTune's left/right sets.
    """
    import numpy as np

    from demoscope.surveys.prompts import unsteered_prompt

    missing_columns = {"qkey", "attribute", "group", "input_prompt", "output_dist"} - set(split.columns)
    if missing_columns:
        raise ConfigError(f"survey split lacks column(s) {sorted(missing_columns)} (write it with `demoscope prepare`)")
    wanted = set(toward) | set(away)
    keys = list(zip(split["attribute"], split["group"]))
    missing = wanted - set(keys)
    if missing:
        raise ConfigError(f"groups {sorted(missing)} are not in the split; it has {sorted(set(keys))[:10]}...")
    rows = []
    frame = split.assign(_key=keys)
    for _, question in frame.groupby("qkey", sort=True):
        by_group = {k: np.asarray(d, dtype=float) for k, d in zip(question["_key"], question["output_dist"])}
        if not wanted <= set(by_group):
            continue
        gap = np.mean([by_group[g] for g in toward], 0) - np.mean([by_group[g] for g in away], 0)
        if gap.max() - gap.min() < min_gap:
            continue
        rows.append({"prompt": unsteered_prompt(question["input_prompt"].iloc[0]),
                     "chosen": " " + chr(65 + int(gap.argmax())), "rejected": " " + chr(65 + int(gap.argmin()))})
    if not rows:
        raise ConfigError(f"no question separates {toward} from {away} by at least {min_gap}")
    return pd.DataFrame(rows, columns=list(COLUMNS))
