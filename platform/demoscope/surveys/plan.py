"""Plan how to aggregate one survey file, from its metadata alone.

A :class:`FilePlan` names the spec that applies, the wave, the weight column,
every question with its option slots, and every subpopulation with the codes
that select it. Problems that only affect part of a file (a question with an
unlabelled code, a group with no column) become :class:`Issue` s; problems that
make the whole file unusable raise :class:`SurveyFormatError`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from demoscope.errors import SurveyFormatError
from demoscope.surveys.metadata import CodebookEntry, Subpopulation
from demoscope.surveys.readers import SurveyMeta
from demoscope.surveys.spec import GroupRule, SurveySpec

REFUSED = "Refused"
TEXT_COLUMN = "holds text"  # plan_group's marker for a demographic column of strings


@dataclass
class Issue:
    """Something skipped while aggregating: which file and column, and why."""

    path: str
    message: str
    column: str | None = None
    fatal: bool = False  # the whole file was skipped

    def __str__(self) -> str:
        where = self.path + (f", column {self.column!r}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass
class QuestionPlan:
    """One question: option labels (refusal last) and the answer code of each option slot."""

    qkey: str
    question: str
    options: list[str]
    slot_codes: list[float]  # NaN for a slot no code maps to (GSS refusal)
    ordinal: list[float]


@dataclass
class GroupPlan:
    """One subpopulation: respondents whose ``column`` holds one of ``codes`` (any of several columns)."""

    subpopulation: Subpopulation
    conditions: list[tuple[str, list[float]]]


@dataclass
class FilePlan:
    spec: SurveySpec
    wave: int | None
    weight_column: str
    questions: list[QuestionPlan]
    groups: list[GroupPlan]
    issues: list[Issue] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        needed = [self.weight_column] + [q.qkey for q in self.questions]
        needed += [c for g in self.groups for c, _ in g.conditions]
        return list(dict.fromkeys(needed))


def find_wave(meta: SurveyMeta, spec: SurveySpec) -> int | None:
    """The wave number: the most common ``spec.wave`` match among column names, else from the file name."""
    if spec.wave is None:
        return None
    pattern = re.compile(spec.wave)
    excluded = tuple(p.lower() for p in spec.questions.exclude_prefixes)
    found = Counter(
        int(m.group(1)) for c in meta.columns if not c.lower().startswith(excluded) and (m := pattern.search(c))
    )
    if found:
        return found.most_common(1)[0][0]
    from_name = re.search(r"W\s*(\d+)", meta.path.stem, re.IGNORECASE)
    return int(from_name.group(1)) if from_name else None


def find_weight(meta: SurveyMeta, spec: SurveySpec, wave: int | None) -> str:
    """The first column matching the spec's weight pattern, else a clear error."""
    regex = spec.weight_regex(wave)
    for column in meta.columns:
        if regex.search(column):
            return column
    similar = [c for c in meta.columns if "w" in c.lower() and "weight" in c.lower() or c.lower().startswith("wt")]
    hint = f"; weight-like columns present: {', '.join(similar[:8])}" if similar else ""
    expected = spec.weight.replace("{wave}", str(wave) if wave is not None else "<wave>")
    raise SurveyFormatError(meta.path, f"no weight column matching {expected!r} ({spec.name} convention){hint}")


def _labels_for(meta: SurveyMeta, spec: SurveySpec, column: str) -> dict[float, str]:
    return meta.value_labels.get(column) or {float(k): v for k, v in spec.value_labels.get(column, {}).items()}


def _question_columns(meta: SurveyMeta, spec: SurveySpec, wave: int | None, codebook: dict, only: set[str] | None):
    rule = spec.questions
    excluded = tuple(p.lower() for p in rule.exclude_prefixes)
    regex = spec.question_regex(wave)
    columns = []
    for column in meta.columns:
        if column.lower().startswith(excluded):
            continue
        if rule.columns is not None and column not in rule.columns:
            continue
        if rule.from_codebook and column not in codebook:
            continue
        if regex is not None and not regex.search(column):
            continue
        if only is not None and column not in only:
            continue
        columns.append(column)
    return columns


def _question_text(meta: SurveyMeta, column: str, entry: CodebookEntry | None) -> str:
    if entry is not None and entry.question:
        return entry.question
    label = meta.column_labels.get(column, "")
    # SubPOP's fallback: ATP labels read "QKEY. Question text".
    return (label.partition(".")[2] if "." in label else label).strip() or column


def plan_question(meta: SurveyMeta, spec: SurveySpec, column: str, entry: CodebookEntry | None) -> QuestionPlan | Issue:
    """Option slots of one question column, or an Issue saying why it cannot be used."""
    path = str(meta.path)
    labels = _labels_for(meta, spec, column)
    if spec.option_codes == "labels":
        if len(labels) < 2:
            return Issue(path, "has no value labels (at least 2 needed to know its options); skipped", column)
        codes, options = list(labels), [label.strip() for label in labels.values()]
        if spec.refusal == "missing":
            codes, options = codes + [np.nan], options + [REFUSED]
        if entry is not None and entry.options is not None and len(entry.options) == len(options):
            options = list(entry.options)
    else:  # offset: option k is code (lowest code + k); SubPOP's GSS rule
        if entry is not None and entry.options is not None:
            options = list(entry.options)
        elif labels:
            options = [label.strip() for label in labels.values()] + [REFUSED]
        else:
            return Issue(path, "has neither value labels nor codebook options; skipped", column)
        valid = [c for c in labels if c >= 0]
        if not valid:
            return Issue(path, "has no non-negative labelled codes to anchor option positions; skipped", column)
        low = min(valid)
        codes = [low + k for k in range(len(options) - 1)] + [np.nan]
    n_scored = len(options) - 1
    ordinal = list(entry.ordinal) if entry is not None and entry.ordinal and len(entry.ordinal) <= n_scored else None
    return QuestionPlan(
        qkey=column,
        question=_question_text(meta, column, entry),
        options=options,
        slot_codes=[float(c) for c in codes],
        # SubPOP-Train's placeholder when no ordinal positions are known.
        ordinal=ordinal if ordinal is not None else [1.0] * n_scored,
    )


def _match_codes(labels: dict[float, str], rule) -> list[float]:
    if rule.codes is not None:
        return [float(c) for c in rule.codes]
    if rule.labels is not None:
        wanted = {label.lower() for label in rule.labels}
        return [code for code, label in labels.items() if label.strip().lower() in wanted]
    prefix = rule.prefix.lower()
    first = next((code for code, label in labels.items() if label.strip().lower().startswith(prefix)), None)
    return [] if first is None else [first]


def plan_group(meta: SurveyMeta, spec: SurveySpec, subpop: Subpopulation) -> GroupPlan | Issue:
    """Which columns and codes select ``subpop`` in this file, or an Issue."""
    path = str(meta.path)
    attribute = spec.attributes.get(subpop.attribute)
    rule: GroupRule | None = attribute.groups.get(subpop.group) if attribute else None
    if attribute is None or rule is None:
        return Issue(path, f"the {spec.name} spec does not define group {subpop.attribute}={subpop.group!r}; skipped")
    candidates = rule.columns or attribute.columns
    lower = {c.lower(): c for c in meta.columns}
    present = [lower[c.lower()] for c in candidates if c.lower() in lower]
    if not present:
        return Issue(path, f"no column for {subpop.attribute} (looked for {', '.join(candidates)}); "
                     f"group {subpop.group!r} skipped")
    if rule.combine == "first":
        present = present[:1]
    text = [c for c in present if c in meta.text_columns]
    if text:
        # Group rules match numeric codes; plan_file turns these into one message per column.
        return Issue(path, TEXT_COLUMN, text[0])
    conditions = []
    for column in present:
        match = rule.match_for(column)
        codes = _match_codes(_labels_for(meta, spec, column), match)
        if codes:
            conditions.append((column, codes))
    if not conditions:
        want = match.prefix or match.labels or match.codes
        labels = list(_labels_for(meta, spec, present[0]).values())
        return Issue(
            path,
            f"no value label matches {want!r} for group {subpop.attribute}={subpop.group!r} "
            f"(labels: {labels[:12]}); group skipped",
            present[0],
        )
    return GroupPlan(subpop, conditions)


def plan_file(
    meta: SurveyMeta,
    spec: SurveySpec,
    subpopulations: list[Subpopulation],
    codebook: dict[str, CodebookEntry],
    only_questions: set[str] | None = None,
) -> FilePlan:
    """Resolve everything needed to aggregate one file; raises only for whole-file problems."""
    wave = find_wave(meta, spec)
    weight = find_weight(meta, spec, wave)
    issues: list[Issue] = []
    questions = []
    for column in _question_columns(meta, spec, wave, codebook, only_questions):
        planned = plan_question(meta, spec, column, codebook.get(column))
        (questions if isinstance(planned, QuestionPlan) else issues).append(planned)
    if not questions:
        raise SurveyFormatError(meta.path, f"no usable question columns found ({spec.name} convention)")
    groups, missing_columns, text_columns = [], {}, {}
    for subpop in subpopulations:
        planned = plan_group(meta, spec, subpop)
        if isinstance(planned, GroupPlan):
            groups.append(planned)
        elif planned.message.startswith("no column for"):
            missing_columns.setdefault(planned.message.split(";")[0], []).append(subpop.group)
        elif planned.message == TEXT_COLUMN:
            text_columns.setdefault(planned.column, []).append(subpop.group)
        else:
            issues.append(planned)
    # One line per missing attribute column, and per text column, not one per group.
    for message, names in missing_columns.items():
        issues.append(Issue(str(meta.path), f"{message}; groups {', '.join(map(repr, names))} skipped"))
    for column, names in text_columns.items():
        issues.append(Issue(
            str(meta.path),
            f"column {column} holds text, not coded answers; groups {', '.join(map(repr, names))} skipped. "
            "Store it as numeric codes and name them in a survey spec (--spec): value_labels for the column, "
            "or codes for each group",
            column,
        ))
    return FilePlan(spec=spec, wave=wave, weight_column=weight, questions=questions, groups=groups, issues=issues)
