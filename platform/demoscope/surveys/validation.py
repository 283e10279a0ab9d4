"""Check distribution files and prepared splits before any model or Ray starts.

Two kinds of table flow between the jobs:

- **distributions** (``demoscope aggregate``'s Parquet/CSV, a SubPOP-format or
  OpinionQA-style CSV): ``qkey, attribute, group, question, options,
  responses, refusal_rate, ordinal``;
- **prepared splits** (``demoscope prepare``): ``qkey, input_prompt,
  output_dist, attribute, group, ordinal``.

The rules, each checked for every row at once (vectorised: a 70k-row file
takes well under a second), in this order:

1. the required columns are present; ``qkey``, ``attribute``, ``group``
   (and ``question`` / ``input_prompt``) are non-empty text;
2. list cells are lists of numbers (``options``: of text); in a CSV they are
   Python literals, as SubPOP writes them (:func:`parse_list_cells`);
3. shares are finite and >= 0. A distribution's ``responses`` sum to 1 within
   :data:`SUM_TOLERANCE` (SubPOP renormalises them without the refusal);
   ``refusal_rate`` lies in [0, 1]; ``options`` has one entry more than
   ``responses`` (the last option is the refusal). A split's ``output_dist``
   is ``responses + [refusal_rate]``, so its entries but the last sum to 1
   and the last lies in [0, 1];
4. ``ordinal`` has 1 to ``len(responses)`` finite positions (for a split,
   ``len(output_dist) - 1``), at least one of them >= 0. The metric reads the
   first ``len(ordinal)`` non-refusal shares (``metrics.opinion.human_distribution``),
   so fewer positions than options is allowed (OpinionQA leaves a trailing
   "Not sure" unscored) but more would compare lists of different lengths;
   negative positions mark unscored answers and a row with only those has no
   uniform baseline;
5. keys are unique: one row per ``(qkey, attribute, group)`` in
   distributions, per ``(qkey, attribute, group, input_prompt)`` in a split
   (``ALL`` steering writes three prompts per group).

The first rule that fails raises :class:`SurveyFormatError` naming the file,
the column, what was expected, how many rows fail and up to
:data:`MAX_SHOWN` of them: ``row N`` is the 0-based data row (the index the
reader gave it), with the CSV ``line`` where the record starts, its qkey and
group. Questions with more options than the trainer's letters are not an
error here: :func:`demoscope.surveys.finetuning.screen_distributions` skips
them with a note.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import re
from collections.abc import Callable, Sequence
from itertools import chain
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from demoscope.errors import SurveyFormatError

SUM_TOLERANCE = 1e-6  # shares written as Python floats round-trip exactly; this only absorbs summation round-off
MAX_SHOWN = 5
DISTRIBUTION_COLUMNS = ("qkey", "attribute", "group", "question", "options", "responses", "refusal_rate", "ordinal")
NUMBER_TYPES = {int, float, np.float64, np.float32, np.int64, np.int32}
SPLIT_COLUMNS = ("qkey", "input_prompt", "output_dist", "attribute", "group", "ordinal")

Kind = Literal["distributions", "split"]


def table_kind(columns: Sequence[str]) -> Kind | None:
    """``"split"`` for a prepared split, ``"distributions"`` for distributions, None if the columns fit neither.

    Decided by the columns only one kind has: ``input_prompt``/``output_dist``
    versus ``responses``/``options``.
    """
    names = set(columns)
    if {"input_prompt", "output_dist"} & names:
        return "split"
    if {"responses", "options"} & names:
        return "distributions"
    return None


def parse_list_cells(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    """``frame[column]`` with CSV list literals (``"[0.5, 0.5]"``) parsed and arrays turned into lists.

    Cells that are neither a list nor a string holding a Python list literal
    raise :class:`SurveyFormatError` naming the rows, as every check here does.
    """
    values = frame[column].tolist()
    parsed: list = []
    bad: list[int] = []
    seen: dict[str, object] = {}  # options and ordinals repeat for every group of a question
    for position, value in enumerate(values):
        if isinstance(value, str):
            if value not in seen:
                seen[value] = _literal(value)
            value = seen[value]
        if isinstance(value, np.ndarray):  # Parquet lists: plain Python numbers, which print as the file holds them
            parsed.append(value.tolist())
        elif isinstance(value, (list, tuple)):
            parsed.append(list(value))
        else:
            parsed.append(None)
            bad.append(position)
    if bad:
        mask = np.zeros(len(values), dtype=bool)
        mask[bad] = True
        _fail(frame, mask, source, column, "a list written as a Python literal, like [0.25, 0.75]",
              lambda position: f"got {_short(values[position])}")
    return pd.Series(parsed, index=frame.index, name=column, dtype=object)


# NumPy 2 prints its scalars as np.float64(0.25): a list of them written with str() holds such wrappers.
_NUMPY_SCALAR = re.compile(r"\b(?:np|numpy)\.(?:float|int|uint)(?:16|32|64)\(([^()]*)\)")


def _literal(text: str) -> object:
    """A Python literal; JSON first, since number lists are valid JSON and it parses them several times faster.

    Lists written by ``str()`` of NumPy 2 scalars (``[np.float64(0.25), ...]``)
    are read as the plain numbers they wrap.
    """
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(_NUMPY_SCALAR.sub(r"\1", text))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def check_distributions(frame: pd.DataFrame, source: str) -> None:
    """Raise :class:`SurveyFormatError` unless every row of a distributions table is usable (rules in the module doc).

    ``frame`` holds real lists (as :func:`demoscope.surveys.read_distributions`
    returns them); ``source`` is the file name used in messages and, for a CSV,
    to find line numbers.
    """
    _check_columns(frame, DISTRIBUTION_COLUMNS, source, "distributions")
    for column in ("qkey", "attribute", "group", "question"):
        _check_text(frame, column, source)
    options = frame["options"].tolist()
    if not (set(map(type, options)) <= {list, tuple} and set(map(type, chain.from_iterable(options))) <= {str}):
        labelled = np.fromiter((_is_text_list(v) for v in options), dtype=bool, count=len(options))
        _require(frame, labelled, source, "options", "a list of option labels (text)", _got(frame, "options"))
    responses = _number_lists(frame, "responses", source)
    _check_shares(frame, responses, source, "responses")
    total = responses.sums()
    _require(frame, np.abs(total - 1.0) <= SUM_TOLERANCE, source, "responses",
             f"shares summing to 1 (within {SUM_TOLERANCE:g}; responses exclude the refusal, renormalised as SubPOP's)",
             lambda position: f"sum {total[position]:.6g}")
    refusal = pd.to_numeric(frame["refusal_rate"], errors="coerce").to_numpy(dtype=float)
    _require(frame, np.isfinite(refusal) & (refusal >= 0) & (refusal <= 1), source, "refusal_rate",
             "a share in [0, 1]", _got(frame, "refusal_rate"))
    n_options = frame["options"].map(len).to_numpy()
    _require(frame, n_options == responses.lengths + 1, source, "options",
             "one option more than responses (the last option is the refusal)",
             lambda position: f"{n_options[position]} options, {responses.lengths[position]} responses")
    _check_ordinal(frame, responses.lengths, "len(responses)", source)
    _check_unique(frame, ["qkey", "attribute", "group"], source)


def check_split(frame: pd.DataFrame, source: str) -> None:
    """Raise :class:`SurveyFormatError` unless every row of a prepared split is usable (rules in the module doc).

    ``frame`` holds real lists (see :func:`demoscope.surveys.finetuning.read_split`).
    """
    _check_columns(frame, SPLIT_COLUMNS, source, "prepared split")
    for column in ("qkey", "attribute", "group", "input_prompt"):
        _check_text(frame, column, source)
    dist = _number_lists(frame, "output_dist", source)
    _check_shares(frame, dist, source, "output_dist")
    _require(frame, dist.lengths >= 2, source, "output_dist", "responses then the refusal share (at least 2 entries)",
             lambda position: f"{dist.lengths[position]} entries")
    refusal = dist.last()
    answers = dist.sums() - refusal
    _require(frame, (np.abs(answers - 1.0) <= SUM_TOLERANCE) & (refusal <= 1), source, "output_dist",
             f"responses summing to 1 (within {SUM_TOLERANCE:g}) followed by a refusal share in [0, 1] "
             "(responses + [refusal_rate], as `demoscope prepare` writes it)",
             lambda position: f"responses sum {answers[position]:.6g}, refusal {refusal[position]:.6g}")
    _check_ordinal(frame, dist.lengths - 1, "len(output_dist) - 1", source)
    _check_unique(frame, ["qkey", "attribute", "group", "input_prompt"], source)


class _Flat:
    """A list column flattened: all values in one float array, with each row's length."""

    def __init__(self, values: np.ndarray, lengths: np.ndarray):
        self.values = values
        self.lengths = lengths
        self.rows = np.repeat(np.arange(len(lengths)), lengths)

    def sums(self) -> np.ndarray:
        return np.bincount(self.rows, weights=self.values, minlength=len(self.lengths))

    def any(self, element_mask: np.ndarray) -> np.ndarray:
        """Per row: does any of its values satisfy ``element_mask``?"""
        return np.bincount(self.rows, weights=element_mask.astype(float), minlength=len(self.lengths)) > 0

    def last(self) -> np.ndarray:
        """Each row's last value (NaN for an empty row)."""
        ends = np.cumsum(self.lengths) - 1
        return np.where(self.lengths > 0, self.values[np.clip(ends, 0, None)] if len(self.values) else np.nan, np.nan)

    def max(self) -> np.ndarray:
        out = np.full(len(self.lengths), -np.inf)
        np.maximum.at(out, self.rows, self.values)
        return out


def _number_lists(frame: pd.DataFrame, column: str, source: str) -> _Flat:
    """Flatten a column of number lists; rows whose cell is not a list of numbers fail."""
    cells = frame[column].tolist()
    # One pass over the element types in C; rows are looked at one by one only when something is off.
    if not (set(map(type, cells)) <= {list, tuple} and set(map(type, chain.from_iterable(cells))) <= NUMBER_TYPES):
        ok = np.fromiter((_is_number_list(v) for v in cells), dtype=bool, count=len(cells))
        _require(frame, ok, source, column, "a list of numbers, like [0.25, 0.75]", _got(frame, column))
    lengths = np.fromiter((len(v) for v in cells), dtype=np.int64, count=len(cells))
    values = np.fromiter(chain.from_iterable(cells), dtype=float, count=int(lengths.sum()))
    return _Flat(values, lengths)


def _check_shares(frame: pd.DataFrame, flat: _Flat, source: str, column: str) -> None:
    bad = flat.any(~np.isfinite(flat.values) | (flat.values < 0))
    _require(frame, ~bad, source, column, "finite shares >= 0", _got(frame, column))


def _check_ordinal(frame: pd.DataFrame, scored: np.ndarray, limit: str, source: str) -> None:
    """``ordinal``: 1..``scored`` finite positions per row, at least one >= 0."""
    ordinal = _number_lists(frame, "ordinal", source)
    _require(frame, ~ordinal.any(~np.isfinite(ordinal.values)), source, "ordinal", "finite positions",
             _got(frame, "ordinal"))
    _require(frame, (ordinal.lengths >= 1) & (ordinal.lengths <= scored), source, "ordinal",
             f"1 to {limit} positions, one per scored option (trailing options may go unscored)",
             lambda position: f"{ordinal.lengths[position]} positions for {scored[position]} answer options")
    _require(frame, ordinal.max() >= 0, source, "ordinal",
             "at least one position >= 0 (negative positions mark answers that are not scored)", _got(frame, "ordinal"))


def _check_columns(frame: pd.DataFrame, required: Sequence[str], source: str, kind: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SurveyFormatError(source, f"lacks column(s) {', '.join(missing)}; a {kind} file has "
                                f"{', '.join(required)} (it has {', '.join(map(str, frame.columns))})")


def _check_text(frame: pd.DataFrame, column: str, source: str) -> None:
    ok = np.array([isinstance(v, str) and v != "" and not v.isspace() for v in frame[column].tolist()], dtype=bool)
    _require(frame, ok, source, column, "non-empty text", _got(frame, column))


def _check_unique(frame: pd.DataFrame, keys: list[str], source: str) -> None:
    repeated = frame.duplicated(keys, keep="first").to_numpy()
    if not repeated.any():
        return
    rows = list(frame[keys].itertuples(index=False, name=None))
    first = {}
    for key, label in zip(rows, frame.index):
        first.setdefault(key, label)
    _fail(frame, repeated, source, "/".join(keys), f"one row per ({', '.join(keys)})",
          lambda position: f"repeats row {first[rows[position]]}")


def _require(frame: pd.DataFrame, ok: np.ndarray, source: str, column: str, expected: str,
             describe: Callable[[int], str]) -> None:
    """Fail for the rows where ``ok`` is false."""
    ok = np.asarray(ok, dtype=bool)
    if not ok.all():
        _fail(frame, ~ok, source, column, expected, describe)


def _fail(frame: pd.DataFrame, bad: np.ndarray, source: str, column: str, expected: str,
          describe: Callable[[int], str]) -> None:
    """Raise one line: file, column, expectation, count, and up to :data:`MAX_SHOWN` rows with qkey, group and value."""
    positions = np.flatnonzero(bad)
    lines = _csv_record_lines(source)
    shown = []
    for position in positions[:MAX_SHOWN]:
        label = frame.index[position]
        where = ([f"line {lines[label]}"]
                 if lines is not None and isinstance(label, (int, np.integer)) and label < len(lines) else [])
        for key in ("qkey", "group"):
            if key in frame.columns:
                where.append(f"{key} {_short(frame[key].iloc[position])}")
        shown.append(f"row {label} ({', '.join(where)}): {describe(position)}" if where
                     else f"row {label}: {describe(position)}")
    more = f"; and {len(positions) - MAX_SHOWN} more" if len(positions) > MAX_SHOWN else ""
    raise SurveyFormatError(source, f"expected {expected}; {len(positions)} of {len(frame)} row(s) fail: "
                            f"{'; '.join(shown)}{more}", column=column)


def _csv_record_lines(source: str) -> list[int] | None:
    """For a CSV file, the 1-based line where each data record starts (quoted cells may span lines); else None.

    Only read when a check fails, so a good file costs nothing.
    """
    path = Path(source)
    if path.suffix.lower() != ".csv" or not path.is_file():
        return None
    starts = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            next(reader, None)  # the header
            start = reader.line_num + 1
            for record in reader:
                if record:  # pandas skips blank lines too
                    starts.append(start)
                start = reader.line_num + 1
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return starts


def _got(frame: pd.DataFrame, column: str) -> Callable[[int], str]:
    values = frame[column]
    return lambda position: f"got {_short(values.iloc[position])}"


def _short(value: object, limit: int = 60) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nothing (empty cell)"
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):  # np.float64(0.5) -> 0.5, as the file shows it
        value = [x.item() if isinstance(x, np.generic) else x for x in value]
    elif isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_number_list(value: object) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and value.dtype.kind in "iuf"
    return isinstance(value, (list, tuple)) and all(_is_number(x) for x in value)


def _is_text_list(value: object) -> bool:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value)
