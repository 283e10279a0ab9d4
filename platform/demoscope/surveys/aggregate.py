"""Weighted answer distributions per (question, subpopulation), file by file.

The work splits into three pure steps so that a Ray layer can run the first in
parallel and stream the rest:

1. :func:`reduce_file` reads one file and reduces it to *partial weighted
   counts*: for every (question, option slot, group), the sums of weights,
   squared weights and respondents. No loop over (question, group) pairs: one
   sparse (slots x respondents) matrix times the dense (respondents x groups)
   membership matrix gives every count at once.
2. :class:`CountAccumulator` adds partials from many files (sums are
   associative, so any combine order gives the same result).
3. :func:`finalize` turns summed counts into SubPOP's rows: ``responses``
   renormalised over the non-refusal options, ``refusal_rate``, respondent
   count ``n``, Kish's effective sample size ``n_eff`` and ``weight_sum``.

Conventions (SubPOP, ``reference/subpop.md`` §1): respondents with a missing
answer are dropped; a NaN weight counts as 0 (and the respondent is not
counted in ``n``); the last option is the refusal option. A file fails as a
whole when a weight is infinite or negative, or when no weight is positive (it
would count as aggregated while adding nothing); a question nobody in a file
answered is skipped for that file and reported with its column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from demoscope.errors import SurveyFormatError
from demoscope.surveys.metadata import CodebookEntry, Subpopulation, load_codebook
from demoscope.surveys.plan import FilePlan, Issue, plan_file
from demoscope.surveys.readers import read_columns, read_meta
from demoscope.surveys.spec import BUILTIN_SPECS, SurveySpec, detect_spec, load_spec

COUNT_COLUMNS = ["qkey", "slot", "attribute", "group", "w", "w2", "n"]
QUESTION_COLUMNS = ["qkey", "question", "options", "ordinal", "source"]
OUTPUT_COLUMNS = [
    "qkey", "attribute", "group", "question", "options", "responses",
    "refusal_rate", "ordinal", "n", "n_eff", "weight_sum", "source",
]


@dataclass
class FilePartial:
    """What one file contributes: partial counts, question metadata, and what was skipped."""

    path: str
    respondents: int = 0
    counts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COUNT_COLUMNS))
    questions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=QUESTION_COLUMNS))
    issues: list[Issue] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(issue.fatal for issue in self.issues)


@dataclass
class AggregateInputs:
    """Everything a file reduction needs besides the file: small, picklable, built once."""

    subpopulations: list[Subpopulation]
    specs: list[SurveySpec]  # tried in order for detection
    forced_spec: SurveySpec | None = None  # --spec: applies to every file
    user_codebook: dict[str, CodebookEntry] = field(default_factory=dict)
    only_questions: set[str] | None = None
    builtin_codebooks: dict[str, dict[str, CodebookEntry]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        subpopulations: list[Subpopulation],
        spec_path: str | None = None,
        codebook_path: str | None = None,
        questions: list[str] | None = None,
    ) -> "AggregateInputs":
        """Load specs and codebooks once (the driver does this, workers reuse it)."""
        builtin = [load_spec(name) for name in BUILTIN_SPECS]
        forced = load_spec(spec_path) if spec_path else None
        specs = [forced] if forced else builtin
        books = {}
        for spec in specs:
            if spec.codebook and spec.codebook not in books:
                books[spec.codebook] = load_codebook(spec.codebook)
        return cls(
            subpopulations=subpopulations,
            specs=specs,
            forced_spec=forced,
            user_codebook=load_codebook(codebook_path) if codebook_path else {},
            only_questions=set(questions) if questions else None,
            builtin_codebooks=books,
        )

    def codebook_for(self, spec: SurveySpec) -> dict[str, CodebookEntry]:
        return {**self.builtin_codebooks.get(spec.codebook or "", {}), **self.user_codebook}


def membership(columns: dict[str, np.ndarray], plan: FilePlan) -> np.ndarray:
    """Respondents x groups 0/1 matrix (float) from each group's (column, codes) conditions."""
    n = len(next(iter(columns.values())))
    matrix = np.zeros((n, len(plan.groups)), dtype=np.float64)
    for j, group in enumerate(plan.groups):
        member = np.zeros(n, dtype=bool)
        for column, codes in group.conditions:
            member |= np.isin(columns[column], codes)
        matrix[:, j] = member
    return matrix


def reduce_file(path: str | Path, inputs: AggregateInputs) -> FilePartial:
    """Reduce one survey file to partial weighted counts. Never raises for bad input.

    A file that cannot be used at all comes back with a fatal :class:`Issue`;
    parts that cannot be used (a question, a group) come back as non-fatal ones.
    """
    partial = FilePartial(path=str(path))
    try:
        meta = read_meta(path)
        spec = inputs.forced_spec or detect_spec(meta.columns, inputs.specs)
        if spec is None:
            raise SurveyFormatError(
                path,
                "not a recognised survey: no Pew ATP weight column (WEIGHT_W<wave>) and no GSS weight "
                "(wtssnrps); describe it with a survey spec YAML (--spec)",
            )
        plan = plan_file(meta, spec, inputs.subpopulations, inputs.codebook_for(spec), inputs.only_questions)
        partial.issues.extend(plan.issues)
        columns = read_columns(meta, plan.columns)
        partial.respondents = len(columns[plan.weight_column])
        _count(columns, plan, partial)
    except SurveyFormatError as exc:
        partial.issues.append(Issue(exc.path, exc.reason, exc.column, fatal=True))
    except Exception as exc:  # noqa: BLE001 - one odd file must not sink the others
        partial.issues.append(Issue(str(path), f"unexpected error: {type(exc).__name__}: {exc}", fatal=True))
    return partial


def _count(columns: dict[str, np.ndarray], plan: FilePlan, partial: FilePartial) -> None:
    path = partial.path
    weights = columns[plan.weight_column]
    _check_weights(weights, path, plan.weight_column)
    has_weight = ~np.isnan(weights)
    weights = np.where(has_weight, weights, 0.0)
    groups = membership(columns, plan)
    for j, group in enumerate(plan.groups):
        if not groups[:, j].any():
            # Real waves often lack a group (no Hindu respondents): report it, keep the others.
            where = ", ".join(c for c, _ in group.conditions)
            sub = group.subpopulation
            partial.issues.append(Issue(path, f"group {sub.attribute}={sub.group!r} has no respondents", where))

    # Map every (respondent, question) answer to a global option-slot id.
    rows, slots, offset, questions = [], [], 0, []
    for question in plan.questions:
        answers = columns[question.qkey]
        answered = np.flatnonzero(~np.isnan(answers))
        if not len(answered):
            # Asked of nobody in this wave (or all answers missing): say so here, where file and column are known.
            partial.issues.append(Issue(path, f"question {question.qkey}: no respondent answered it; skipped",
                                        question.qkey))
            continue
        given = answers[answered]
        hits = given[:, None] == np.asarray(question.slot_codes)[None, :]  # <= 10 options: a tiny matrix
        known = hits.any(axis=1)
        if not known.all():
            unknown = sorted(set(given[~known].tolist()))
            partial.issues.append(Issue(
                path,
                f"answer code(s) {', '.join(f'{c:g}' for c in unknown[:5])} have no value label "
                f"(labelled codes: {', '.join(f'{c:g}' for c in question.slot_codes if c == c)}); question skipped",
                question.qkey,
            ))
            continue
        rows.append(answered)
        slots.append(hits.argmax(axis=1) + offset)
        offset += len(question.slot_codes)
        questions.append(question)
    if not questions:
        raise SurveyFormatError(path, "no question could be aggregated")

    # One sparse (slots x respondents) indicator times [groups*w | groups*w^2 | groups*counted]
    # gives every weighted count, squared-weight sum and respondent count at once.
    resp = np.concatenate(rows)
    indicator = sparse.csr_matrix(
        (np.ones(len(resp)), (np.concatenate(slots), resp)), shape=(offset, len(weights))
    )
    right = np.hstack([groups * weights[:, None], groups * (weights**2)[:, None], groups * has_weight[:, None]])
    w, w2, n = np.split(np.asarray(indicator @ right), 3, axis=1)
    sizes = [len(q.slot_codes) for q in questions]
    slot_qkey = np.repeat(np.array([q.qkey for q in questions], dtype=object), sizes)
    slot_index = np.concatenate([np.arange(size) for size in sizes])
    attrs = [g.subpopulation.attribute for g in plan.groups]
    names = [g.subpopulation.group for g in plan.groups]
    long = pd.DataFrame({
        "qkey": np.repeat(slot_qkey, len(attrs)),
        "slot": np.repeat(slot_index, len(attrs)),
        "attribute": np.tile(attrs, offset),
        "group": np.tile(names, offset),
        "w": w.ravel(), "w2": w2.ravel(), "n": n.ravel(),
    })
    partial.counts = long[long["n"] > 0].reset_index(drop=True)
    partial.questions = pd.DataFrame({
        "qkey": [q.qkey for q in questions],
        "question": [q.question for q in questions],
        "options": [q.options for q in questions],
        "ordinal": [q.ordinal for q in questions],
        "source": Path(path).name,
    })


def _check_weights(weights: np.ndarray, path: str, column: str) -> None:
    """Refuse weights no distribution can come from: infinite, negative, or none positive.

    An infinite weight would turn its groups' shares into NaN, a negative one
    has no meaning, and a file whose weights are all missing or zero would
    count as aggregated while contributing nothing.
    """
    if not len(weights):
        raise SurveyFormatError(path, "holds no respondents", column)
    infinite = int(np.isinf(weights).sum())
    if infinite:
        raise SurveyFormatError(path, f"holds {infinite} infinite weight(s); expected finite weights >= 0", column)
    if np.nanmin(weights, initial=0.0) < 0:
        raise SurveyFormatError(path, "holds negative weights; expected weights >= 0", column)
    if not (weights > 0).any():  # NaN > 0 is False
        raise SurveyFormatError(path, f"all {len(weights)} weights are missing or zero; no respondent can count",
                                column)


class CountAccumulator:
    """Adds file partials; memory stays at one consolidated table plus a few pending partials."""

    def __init__(self, consolidate_every: int = 8):
        self._pending: list[pd.DataFrame] = []
        self._total: pd.DataFrame | None = None
        self._questions: dict[str, dict] = {}
        self.issues: list[Issue] = []
        self.files = 0
        self.failed_files: list[str] = []
        self.respondents = 0
        self._every = consolidate_every

    def add(self, partial: FilePartial) -> None:
        self.files += 1
        self.issues.extend(partial.issues)
        if partial.failed:
            self.failed_files.append(partial.path)
            return
        self.respondents += partial.respondents
        counts = partial.counts
        for row in partial.questions.itertuples(index=False):
            seen = self._questions.get(row.qkey)
            if seen is None:
                self._questions[row.qkey] = row._asdict()
            elif list(seen["options"]) != list(row.options):
                self.issues.append(Issue(
                    partial.path,
                    f"options {list(row.options)} differ from {list(seen['options'])} in {seen['source']}; "
                    "this file's answers to it were skipped",
                    row.qkey,
                ))
                counts = counts[counts["qkey"] != row.qkey]
            elif row.source not in seen["source"].split(";"):
                seen["source"] = f"{seen['source']};{row.source}"
        self._pending.append(counts)
        if len(self._pending) >= self._every:
            self._consolidate()

    def _consolidate(self) -> None:
        frames = ([self._total] if self._total is not None else []) + self._pending
        frames = [f for f in frames if len(f)]
        self._pending = []
        if frames:
            self._total = (
                pd.concat(frames, ignore_index=True)
                .groupby(["qkey", "slot", "attribute", "group"], sort=False, as_index=False)[["w", "w2", "n"]]
                .sum()
            )

    def counts(self) -> pd.DataFrame:
        self._consolidate()
        return self._total if self._total is not None else pd.DataFrame(columns=COUNT_COLUMNS)

    def questions(self) -> pd.DataFrame:
        return pd.DataFrame(list(self._questions.values()), columns=QUESTION_COLUMNS)


def finalize(
    counts: pd.DataFrame, questions: pd.DataFrame, subpopulations: list[Subpopulation]
) -> tuple[pd.DataFrame, list[Issue]]:
    """Summed counts -> one row per (question, subpopulation) with SubPOP's columns.

    Rows come out sorted by question key, then in the subpopulation table's
    order. Pairs with no respondents (or only refusals) are left out and
    reported as Issues.
    """
    issues: list[Issue] = []
    if counts.empty:
        return pd.DataFrame(columns=OUTPUT_COLUMNS), issues
    questions = questions.sort_values("qkey").reset_index(drop=True)
    sizes = questions["options"].map(len).to_numpy()
    order = {(s.attribute, s.group): i for i, s in enumerate(subpopulations)}
    pairs = counts[["attribute", "group"]].drop_duplicates()
    pairs = pairs.assign(rank=[order.get(k, len(order)) for k in zip(pairs["attribute"], pairs["group"])])
    pairs = pairs.sort_values("rank", kind="stable")[["attribute", "group"]].reset_index(drop=True)

    # Dense (question x group x slot) weight tensor, padded to the widest question.
    width = int(sizes.max())
    qi = pd.Index(questions["qkey"]).get_indexer(counts["qkey"])
    gi = pd.MultiIndex.from_frame(pairs).get_indexer(pd.MultiIndex.from_frame(counts[["attribute", "group"]]))
    keep = (qi >= 0) & (gi >= 0)
    shape = (len(questions), len(pairs), width)
    w = np.zeros(shape)
    np.add.at(w, (qi[keep], gi[keep], counts["slot"].to_numpy()[keep].astype(int)), counts["w"].to_numpy()[keep])
    totals = pd.DataFrame({"qi": qi, "gi": gi, "w2": counts["w2"], "n": counts["n"]})[keep]
    totals = totals.groupby(["qi", "gi"])[["w2", "n"]].sum()
    w2 = np.zeros(shape[:2])
    n = np.zeros(shape[:2])
    idx = (totals.index.get_level_values(0), totals.index.get_level_values(1))
    w2[idx], n[idx] = totals["w2"].to_numpy(), totals["n"].to_numpy()

    weight_sum = w.sum(axis=2)
    refusal_slot = sizes - 1
    refused = np.take_along_axis(w, refusal_slot[:, None, None].repeat(len(pairs), 1), axis=2)[..., 0]
    answered = weight_sum - refused
    empty = weight_sum <= 0
    only_refused = ~empty & (answered <= 0)
    # Name the groups, and the questions with the files they came from, so a reader knows where to look.
    for mask, what in ((empty, "had no respondents"), (only_refused, "had only refusals")):
        if mask.any():
            q, g = np.nonzero(mask)
            by_group = _top([f"{pairs.attribute[j]}={pairs.group[j]}" for j in g], "questions")
            by_question = _top([f"{questions.qkey[i]} in {questions.source[i]}" for i in q], "groups")
            issues.append(Issue(
                "(all files)",
                f"{len(q)} (question, group) pairs {what} and were left out; by group: {by_group}; "
                f"by question: {by_question}",
            ))

    q_idx, g_idx = np.nonzero(~empty & ~only_refused)
    rows_w = w[q_idx, g_idx]
    total = weight_sum[q_idx, g_idx]
    k = sizes[q_idx]
    substantive = rows_w.copy()
    substantive[np.arange(width)[None, :] >= (k - 1)[:, None]] = 0.0  # the refusal slot and padding
    substantive /= substantive.sum(axis=1, keepdims=True)
    responses = [row[: size - 1].tolist() for row, size in zip(substantive, k)]
    options, ordinals = questions["options"].tolist(), questions["ordinal"].tolist()
    out = pd.DataFrame({
        "qkey": questions["qkey"].to_numpy()[q_idx],
        "attribute": pairs["attribute"].to_numpy()[g_idx],
        "group": pairs["group"].to_numpy()[g_idx],
        "question": questions["question"].to_numpy()[q_idx],
        "options": [list(options[i]) for i in q_idx],
        "responses": responses,
        "refusal_rate": refused[q_idx, g_idx] / total,
        "ordinal": [list(ordinals[i]) for i in q_idx],
        "n": n[q_idx, g_idx].astype(np.int64),
        "n_eff": total**2 / w2[q_idx, g_idx],
        "weight_sum": total,
        "source": questions["source"].to_numpy()[q_idx],
    })
    return out[OUTPUT_COLUMNS], issues


def _top(names: list[str], unit: str, shown: int = 6) -> str:
    """``"a (3 unit), b (1 unit), ... (4 more)"``: the most frequent names with their counts."""
    counts = pd.Series(names).value_counts()
    text = ", ".join(f"{name} ({count} {unit})" for name, count in counts.head(shown).items())
    return text + (f", ... ({len(counts) - shown} more)" if len(counts) > shown else "")
