"""A seeded synthetic survey world with a known truth.

:func:`generate_world` writes Pew ATP-style SPSS waves (``ATP W26.sav`` ...) and
a GSS-style Stata file (``GSS2022.dta``) with the real question keys, texts and
options of the shipped SubPOP codebooks, real column names, codes, labels,
refusals, skips and weights, plus the true distribution of every question in
SubPOP's 22 groups: readers and aggregation can be tested end to end.

Opinion model: each respondent answers question ``q`` with probabilities
``softmax(base_q + sum over attributes a of effect_q[a][value of a])``. Party
and ideology effects are strong and point the same way (a left-right lean);
the other attributes are weak. On ordinal questions every effect is a slope
along the ordinal axis, so "more conservative" means "further along the scale"
(towards the later options on 90% of them), and the base favours the middle of
the scale: regularities that carry over to held-out questions.
Parameters are drawn from ``(seed, question stem)``, so a question asked in
two waves has one model. Refusals and skips are independent of opinions, and
weights are independent of everything, so weighted estimates are unbiased.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from demoscope.io import atomic_write, atomic_write_text
from demoscope.surveys.synthetic_people import (
    ATP_ATTRS,
    ATP_DEMOGRAPHICS,
    ATP_GROUPS,
    GSS_ATTRS,
    GSS_DEMOGRAPHICS,
    GSS_GROUPS,
    REFUSED,
    Attr,
    atp_people,
    gss_people,
)

FIRST_EXTRA_WAVE = 1001  # wave numbers past the 14 real OpinionQA waves
REFERENCE_SIZE = 100_000  # people behind the truth: even a 2% group holds ~2,000 of them
ATP_REFUSE_P, ATP_SKIP_P, GSS_SKIP_P, WEIGHT_MISSING_P = 0.02, 0.05, 0.05, 0.01


@dataclass
class SyntheticWorld:
    files: list[Path]  # every survey file written, ATP waves first (sorted by wave), then the GSS file
    codebook_path: Path  # codebook.json in SubPOP's refined_qkey_dict format
    truth: pd.DataFrame  # qkey, attribute, group, responses (distribution over non-refusal options)


@dataclass(frozen=True)
class _Question:
    qkey: str  # the key in this world (ATP keys of extra waves are renamed)
    source: str  # "atp" or "gss"
    model_key: str  # seeds the opinion model: one per stem, so a repeated question keeps its model
    entry: dict  # codebook entry, as written to codebook.json
    options: tuple[str, ...]  # the non-refusal options, coded 1..K-1


def _rng(seed: int, name: str) -> np.random.Generator:
    # Named streams derived from the seed: crc32 is stable across runs (hash() is not).
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


@cache
def _codebook(name: str) -> dict[str, dict]:
    return json.loads((resources.files("demoscope.surveys") / "data" / "subpop" / name).read_text())


@cache
def _atp_usable() -> dict[int, list[str]]:
    """Real ATP qkeys by wave, keeping those whose ordinal covers every non-refusal option."""
    by_wave: dict[int, list[str]] = {}
    for qkey, entry in _codebook("opinionqa_codebook.json").items():
        # 12 questions put a "Not sure" option outside the ordinal scale; the opinion model
        # needs a position for every option, so the world leaves them out.
        if entry["options"][-1] == "Refused" and len(entry["ordinal"]) == len(entry["options"]) - 1:
            by_wave.setdefault(int(qkey.rsplit("_W", 1)[1]), []).append(qkey)
    return dict(sorted(by_wave.items()))


def _question(qkey: str) -> _Question:
    """Resolve a world qkey: a GSS key, a real ATP key, or a renamed ATP key of an extra wave."""
    gss, atp = _codebook("gss2022_codebook.json"), _codebook("opinionqa_codebook.json")
    if qkey in gss:
        return _Question(qkey, "gss", f"gss:{qkey}", gss[qkey], tuple(gss[qkey]["option_list"][:-1]))
    stem, _, wave = qkey.rpartition("_W")
    if wave.isdigit() and int(wave) >= FIRST_EXTRA_WAVE:  # an extra wave reuses a real wave's questions
        wave = str(list(_atp_usable())[(int(wave) - FIRST_EXTRA_WAVE) % len(_atp_usable())])
    source_key = f"{stem}_W{wave}"
    if not (wave.isdigit() and source_key in _atp_usable().get(int(wave), [])):
        raise KeyError(f"unknown or unusable question key {qkey!r}")
    return _Question(qkey, "atp", f"atp:{stem}", atp[source_key], tuple(atp[source_key]["options"][:-1]))


def _wave_plan(waves: int, questions_per_wave: int | None) -> list[tuple[int, list[str]]]:
    """(wave number, qkeys): the real waves in order, then 1001, 1002, ... cycling over them."""
    real = _atp_usable()
    numbers = list(real)
    plan = []
    for i in range(waves):
        wave = numbers[i] if i < len(numbers) else FIRST_EXTRA_WAVE + i - len(numbers)
        keys = real[numbers[i % len(numbers)]][:questions_per_wave]
        plan.append((wave, [f"{k.rsplit('_W', 1)[0]}_W{wave}" for k in keys]))
    return plan




def _design(people: pd.DataFrame, attrs: list[Attr]) -> np.ndarray:
    """Intercept plus one indicator per (attribute, effective code): logits = design @ model."""
    parts = [np.ones(len(people))]
    for column, codes, _ in attrs:
        values = people[column].to_numpy()
        parts.extend(values == c for c in codes)
    return np.column_stack(parts).astype(np.float32)


def _model(seed: int, question: _Question, attrs: list[Attr]) -> np.ndarray:
    """(1 + number of indicators, K-1) logit weights: base row, then one row per attribute value."""
    rng = _rng(seed, question.model_key)
    pos = np.asarray(question.entry["ordinal"], float)
    k = len(pos)
    ordinal = len(set(pos)) == k
    axis = (pos - pos.mean()) / (np.ptp(pos) or 1.0)  # ordinal scale centred, width 1
    # The political tilt: along the ordinal axis, or free over nominal options. On 90% of
    # ordinal questions the right leans towards the later options, and every ordinal
    # question's base favours the middle and the start of the scale (acquiescence):
    # patterns that hold across questions, so a model tuned on some questions has
    # something to carry to new ones.
    tilt = (1.0 if rng.random() < 0.9 else -1.0) * axis if ordinal else rng.normal(0, 1.2, k)
    base = rng.normal(0, 0.4, (1, k)) - (5.0 * axis**2 + 1.5 * axis if ordinal else 0.0)
    rows = [base if ordinal else rng.normal(0, 1, (1, k))]
    for _, codes, lean in attrs:
        n = len(codes)
        if lean is not None:  # strong: party and ideology lean the same way
            leans = np.array([lean.get(c, 0.0) for c in codes])[:, None]
            rows.append(rng.uniform(1.0, 2.0) * leans * tilt + rng.normal(0, 0.15, (n, k)))
        elif ordinal:
            rows.append(rng.normal(0, 0.5, (n, 1)) * axis)
        else:
            rows.append(rng.normal(0, 0.3, (n, k)))
    return np.vstack(rows).astype(np.float32)


def _answers(rng: np.random.Generator, design: np.ndarray, model: np.ndarray,
             refuse_p: float, skip_p: float) -> np.ndarray:
    """Sample codes 1..K-1 (Gumbel-max), then refusals (99) and skips (NaN) independent of opinion."""
    logits = design.astype(np.float64) @ model.astype(np.float64)
    codes = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1) + 1.0
    u = rng.random(len(codes))
    codes[u < refuse_p] = REFUSED
    codes[(u >= refuse_p) & (u < refuse_p + skip_p)] = np.nan
    return codes


def _weights(rng: np.random.Generator, n: int) -> np.ndarray:
    w = rng.lognormal(-0.08, 0.4, n)  # mean exp(-0.08 + 0.4**2 / 2) = 1
    w[rng.random(n) < WEIGHT_MISSING_P] = np.nan
    return w


def _members(people: pd.DataFrame, groups: dict[tuple[str, str], dict[str, list[int]]]) -> np.ndarray:
    """(groups, people) matrix whose rows average over a group's members."""
    masks = [np.logical_or.reduce([people[c].isin(codes).to_numpy() for c, codes in spec.items()])
             for spec in groups.values()]
    return np.asarray([m / max(m.sum(), 1) for m in masks], np.float32)


def _truth_for(seed: int, questions: list[_Question], source: str, size: int) -> dict[str, np.ndarray]:
    """model_key -> (22, K-1) expected distributions over a seeded reference population."""
    attrs, groups = (ATP_ATTRS, ATP_GROUPS) if source == "atp" else (GSS_ATTRS, GSS_GROUPS)
    people = (atp_people if source == "atp" else gss_people)(_rng(seed, f"{source}-reference"), size)
    design, members = _design(people, attrs), _members(people, groups)
    unique = list({q.model_key: q for q in questions}.values())
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(unique), 64):  # chunks bound the (size x options) memory
        chunk = unique[start:start + 64]
        models = [_model(seed, q, attrs) for q in chunk]
        widths = [m.shape[1] for m in models]
        # Options x people: each question's options are contiguous rows (and BLAS is fastest this way).
        # Logits stay within about +-20 at these scales, so float32 exp cannot overflow.
        probs = np.exp(np.hstack(models).T @ design.T)
        starts = np.cumsum([0] + widths[:-1])
        probs /= np.repeat(np.add.reduceat(probs, starts, axis=0), widths, axis=0)
        means = (probs @ members.T).astype(np.float64).T
        for q, s, w in zip(chunk, starts, widths):
            block = means[:, s:s + w]
            out[q.model_key] = block / block.sum(axis=1, keepdims=True)
    return out


def true_distributions(qkeys: list[str], seed: int = 0, reference_size: int = REFERENCE_SIZE) -> pd.DataFrame:
    """True distributions of ``qkeys`` (ATP, renamed extra-wave ATP, or GSS keys) in SubPOP's 22 groups.

    Each is the mean, over ``reference_size`` seeded synthetic people of the
    population model, of their answer probabilities: no answer-sampling noise.
    Returns columns ``qkey, attribute, group, responses`` (K-1 floats summing to 1).
    """
    questions = [_question(k) for k in qkeys]
    truth: dict[str, np.ndarray] = {}
    for source in ("atp", "gss"):
        subset = [q for q in questions if q.source == source]
        if subset:
            truth |= _truth_for(seed, subset, source, reference_size)
    rows = [(q.qkey, attribute, group, dist.tolist()) for q in questions
            for (attribute, group), dist in zip(ATP_GROUPS if q.source == "atp" else GSS_GROUPS, truth[q.model_key])]
    return pd.DataFrame(rows, columns=["qkey", "attribute", "group", "responses"])


def _clip(text: str, limit: int) -> str:
    """Trim to ``limit`` UTF-8 bytes (the formats' label limits) without splitting a character."""
    return text.encode()[:limit].decode(errors="ignore")


def _atp_wave(rng: np.random.Generator, seed: int, wave: int, questions: list[_Question],
              panel: pd.DataFrame, respondents: int) -> tuple[pd.DataFrame, dict, dict]:
    """One wave's frame, value labels and column labels, from a random subset of the panel."""
    people = panel.iloc[np.sort(rng.choice(len(panel), respondents, replace=False))].reset_index(drop=True)
    design = _design(people, ATP_ATTRS)
    frame = {"QKEY": people["QKEY"].to_numpy(), f"WEIGHT_W{wave}": _weights(rng, respondents)}
    frame |= {c: people[c].to_numpy() for c in ATP_DEMOGRAPHICS}
    value_labels = {c: {float(i): lab for i, lab in enumerate(s[1], start=1)} | {float(REFUSED): "Refused"}
                    for c, s in ATP_DEMOGRAPHICS.items()}
    column_labels = {"QKEY": "Unique ID", f"WEIGHT_W{wave}": f"Wave {wave} weight"}
    column_labels |= {c: s[0] for c, s in ATP_DEMOGRAPHICS.items()}
    for q in questions:
        frame[q.qkey] = _answers(rng, design, _model(seed, q, ATP_ATTRS), ATP_REFUSE_P, ATP_SKIP_P)
        value_labels[q.qkey] = {float(i): _clip(o, 120) for i, o in enumerate(q.options, 1)}
        value_labels[q.qkey][float(REFUSED)] = "Refused"  # last: refusal has the highest code
        column_labels[q.qkey] = _clip(f"{q.qkey}. {q.entry['original_qbody']}", 256)
    return pd.DataFrame(frame), value_labels, column_labels


def _gss_frame(rng: np.random.Generator, seed: int, questions: list[_Question],
               respondents: int) -> tuple[pd.DataFrame, dict, dict]:
    """The GSS frame: id, weight, demographics and answers (no refusal code: refusals are NaN)."""
    people = gss_people(rng, respondents)
    design = _design(people, GSS_ATTRS)
    frame = {"id": np.arange(1, respondents + 1, dtype=float), "wtssnrps": _weights(rng, respondents)}
    frame |= {c: people[c].to_numpy() for c in GSS_DEMOGRAPHICS}
    value_labels = {c: {float(k): v for k, v in s[1].items()} for c, s in GSS_DEMOGRAPHICS.items()}
    column_labels = {"id": "respondent id number", "wtssnrps": "weight, non-response adjusted"}
    column_labels |= {c: s[0] for c, s in GSS_DEMOGRAPHICS.items()}
    for q in questions:
        frame[q.qkey] = _answers(rng, design, _model(seed, q, GSS_ATTRS), 0.0, GSS_SKIP_P)
        value_labels[q.qkey] = {float(i): _clip(o, 32000) for i, o in enumerate(q.options, start=1)}
        column_labels[q.qkey] = _clip(q.entry["original_qbody"], 80)  # Stata's variable-label limit
    return pd.DataFrame(frame), value_labels, column_labels


def generate_world(out_dir: str | Path, waves: int = 4, respondents: int = 2000, seed: int = 0,
                   gss: bool = True, questions_per_wave: int | None = None,
                   progress: Callable[[str], None] | None = None) -> SyntheticWorld:
    """Write a seeded synthetic survey world to ``out_dir`` and return its files and truth.

    Writes ``surveys/ATP W{wave}.sav`` for ``waves`` waves (the 14 real OpinionQA
    waves, then 1001, 1002, ... reusing their questions under renamed keys),
    ``surveys/GSS2022.dta`` if ``gss``, and beside the folder ``codebook.json``
    (SubPOP refined_qkey_dict format) and ``truth.parquet``. The survey files
    sit in a folder of their own so that ``--input OUT/surveys`` takes them all. ``questions_per_wave`` caps
    questions per file. The same
    seed gives the same data; every file is written atomically.
    """
    import pyreadstat

    if waves < 0 or respondents < 1 or (questions_per_wave is not None and questions_per_wave < 1):
        raise ValueError("need waves >= 0, respondents >= 1 and questions_per_wave >= 1 (or None)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda _msg: None)
    rng = _rng(seed, "sample")
    # An ATP panel: each wave interviews a random subset, so QKEYs recur across waves.
    panel = atp_people(rng, respondents * 3 // 2)
    panel.insert(0, "QKEY", 100_000.0 + np.arange(len(panel)) * 7.0)
    files: list[Path] = []
    all_questions: list[_Question] = []
    plan: list[tuple[int | None, list[str]]] = list(_wave_plan(waves, questions_per_wave))
    if gss:
        plan.append((None, list(_codebook("gss2022_codebook.json"))[:questions_per_wave]))
    for wave, qkeys in plan:
        questions = [_question(k) for k in qkeys]
        if wave is None:
            name, write = "GSS2022.dta", pyreadstat.write_dta
            frame, labels, column_labels = _gss_frame(rng, seed, questions, respondents)
        else:
            name, write = f"ATP W{wave}.sav", pyreadstat.write_sav
            frame, labels, column_labels = _atp_wave(rng, seed, wave, questions, panel, respondents)
        files.append(atomic_write(
            out / "surveys" / name,
            lambda tmp, write=write, frame=frame, column_labels=column_labels, labels=labels: write(
                frame, str(tmp), column_labels=column_labels, variable_value_labels=labels)))
        all_questions += questions
        report(f"wrote {name}: {len(frame)} respondents, {len(questions)} questions")
    codebook = {q.qkey: q.entry for q in all_questions}
    codebook_path = atomic_write_text(out / "codebook.json", json.dumps(codebook, indent=2, ensure_ascii=False))
    truth = true_distributions([q.qkey for q in all_questions], seed)
    atomic_write(out / "truth.parquet", lambda tmp: truth.to_parquet(tmp, index=False))
    report(f"wrote truth.parquet: {len(truth)} rows")
    return SyntheticWorld(files=files, codebook_path=codebook_path, truth=truth)
