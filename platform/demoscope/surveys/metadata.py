"""Shipped survey metadata: subpopulation tables and codebooks.

SubPOP's 22- and 61-group tables and the GSS 2022 / OpinionQA codebooks ship
as package data (``data/subpop/``, BSD-3, see ``ATTRIBUTION.md`` there); a
user's own table or codebook in the same format works everywhere these do.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from demoscope.errors import SpecError

BUILTIN_SUBPOPULATIONS = {"22": "demographics_22.csv", "61": "demographics_61.csv"}
BUILTIN_CODEBOOKS = {"opinionqa": "opinionqa_codebook.json", "gss2022": "gss2022_codebook.json"}


def _data_file(name: str):
    return resources.files("demoscope.surveys") / "data" / "subpop" / name


@dataclass(frozen=True)
class Subpopulation:
    """One group of respondents, e.g. ``POLIDEOLOGY`` / ``Liberal``."""

    attribute: str
    group: str


@dataclass(frozen=True)
class CodebookEntry:
    """A question's text, its options (refusal last) and ordinal positions (of the first scored options)."""

    question: str
    options: tuple[str, ...] | None
    ordinal: tuple[float, ...] | None


def load_subpopulations(source: str | Path = "22") -> list[Subpopulation]:
    """Read a subpopulation table: ``22`` or ``61`` (SubPOP's), or a CSV path.

    The CSV has columns ``attribute, group``; ``group`` is either one group name
    or a Python-literal list of names (SubPOP's format). Order is kept.
    """
    if str(source) in BUILTIN_SUBPOPULATIONS:
        path, text = str(source), _data_file(BUILTIN_SUBPOPULATIONS[str(source)]).read_text()
    else:
        path = str(source)
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise SpecError(f"cannot read subpopulation table {path}: {exc.strerror or exc}") from None
    from io import StringIO

    try:
        table = pd.read_csv(StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SpecError(f"subpopulation table {path} is not a CSV: {exc}") from None
    missing = {"attribute", "group"} - set(table.columns)
    if missing:
        raise SpecError(f"subpopulation table {path} lacks column(s) {sorted(missing)}; expected 'attribute,group'")
    out: list[Subpopulation] = []
    for attribute, group in zip(table["attribute"], table["group"]):
        groups = [group]
        if group.startswith("["):
            try:
                groups = list(ast.literal_eval(group))
            except (ValueError, SyntaxError):
                raise SpecError(f"subpopulation table {path}: group list {group!r} "
                                f"is not a Python-literal list") from None
        out.extend(Subpopulation(attribute.strip(), str(g).strip()) for g in groups)
    if not out:
        raise SpecError(f"subpopulation table {path} defines no groups")
    return out


def load_codebook(source: str | Path) -> dict[str, CodebookEntry]:
    """Read a codebook in SubPOP's ``refined_qkey_dict.json`` format (built-in name or path).

    Each entry may hold ``refined_qbody`` (else ``original_qbody``), ``options``
    or ``option_list`` (refusal last) and ``ordinal``.
    """
    if str(source) in BUILTIN_CODEBOOKS:
        path, text = f"built-in codebook {source!r}", _data_file(BUILTIN_CODEBOOKS[str(source)]).read_text()
    else:
        path = str(source)
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise SpecError(f"cannot read codebook {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"codebook {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"codebook {path} must map question keys to entries")
    book: dict[str, CodebookEntry] = {}
    for qkey, entry in raw.items():
        if not isinstance(entry, dict):
            raise SpecError(f"codebook {path}: entry {qkey!r} is not an object")
        options = entry.get("options", entry.get("option_list"))
        ordinal = entry.get("ordinal")
        # OpinionQA lists fewer ordinal positions than options for a few questions
        # ("Not sure" after the scale): those extra options are not scored.
        if options is not None and ordinal is not None and len(ordinal) > len(options) - 1:
            raise SpecError(
                f"codebook {path}: {qkey!r} has {len(options)} options but {len(ordinal)} ordinal positions "
                "(expected at most one per option except the final refusal)"
            )
        text_ = entry.get("refined_qbody") or entry.get("original_qbody") or ""
        book[qkey] = CodebookEntry(
            question=str(text_).strip(),
            options=tuple(str(o).strip() for o in options) if options is not None else None,
            ordinal=tuple(float(v) for v in ordinal) if ordinal is not None else None,
        )
    return book
