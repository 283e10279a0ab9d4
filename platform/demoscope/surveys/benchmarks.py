"""Published opinion benchmarks, read in their own formats into our distributions frame.

- ``subpop-train`` / ``subpop-eval``: the SubPOP release (Suh et al. 2025;
  huggingface.co/datasets/jjssuh/subpop, gated: accept its terms first), one
  JSON object per (question, subpopulation) with SubPOP's processed columns
  (``qkey, attribute, group, question, options, responses, refusal_rate,
  ordinal``), the same as SubPOP's processed CSVs.
- ``opinionqa``: OpinionQA's group distributions (Santurkar et al. 2023,
  github.com/tatsu-lab/opinions_qa) as SubPOP's repository processes them
  (``data/opinionqa/processed/opinionqa.csv``, the same columns).
- ``globalopinionqa``: GlobalOpinionQA (Durmus et al. 2023;
  huggingface.co/datasets/Anthropic/llm_global_opinions), one CSV row per
  question: ``question``, ``options`` (a Python list literal), ``selections``
  (a ``defaultdict`` repr mapping each country to its shares per option) and
  ``source``; each (question, country) becomes a row of attribute
  ``COUNTRY``.

:func:`load_benchmark` takes a name (the hub with ``datasets`` when the
network and ``HF_HUB_OFFLINE`` allow, else the local copy where the
benchmark's own repository puts it) or a path to a file in one of these
formats.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from demoscope.errors import ConfigError
from demoscope.surveys.prompts import COUNTRY_ATTRIBUTE as COUNTRY

# GlobalOpinionQA's non-answers, scored as SubPOP scores refusals (left out, the rest renormalised).
_NON_ANSWER = re.compile(r"(don.?t know|refused|no answer|dk/|not sure|decline)", re.IGNORECASE)


@dataclass(frozen=True)
class Benchmark:
    """Where a published benchmark lives and what format it has."""

    name: str
    kind: str  # "subpop" (SubPOP's processed columns) or "globalopinionqa"
    local: tuple[str, ...]  # glob patterns of a local copy, relative to the working folder
    hub: str | None  # Hugging Face dataset id
    hub_files: str | None  # data_files pattern inside it
    fetch: str  # what to download, for the error message


BENCHMARKS = {
    "subpop-train": Benchmark("subpop-train", "subpop", ("data/subpop-train/processed/*.jsonl",), "jjssuh/subpop",
                              "*[Tt]rain*.jsonl", "SubPOP-Train from https://huggingface.co/datasets/jjssuh/subpop "
                              "(accept its terms) into data/subpop-train/processed/"),
    "subpop-eval": Benchmark("subpop-eval", "subpop", ("data/subpop-eval/processed/*.jsonl",), "jjssuh/subpop",
                             "*[Ee]val*.jsonl", "SubPOP-Eval from https://huggingface.co/datasets/jjssuh/subpop "
                             "(accept its terms) into data/subpop-eval/processed/"),
    "opinionqa": Benchmark("opinionqa", "subpop", ("data/opinionqa/processed/opinionqa.csv",), None, None,
                           "data/opinionqa/processed/opinionqa.csv from https://github.com/JosephJeesungSuh/subpop "
                           "(OpinionQA's distributions, github.com/tatsu-lab/opinions_qa, as SubPOP processes them)"),
    "globalopinionqa": Benchmark("globalopinionqa", "globalopinionqa",
                                 ("data/globalopinionqa/*.csv", "data/llm_global_opinions/data/global_opinions.csv"),
                                 "Anthropic/llm_global_opinions", "data/global_opinions.csv",
                                 "data/global_opinions.csv from https://huggingface.co/datasets/Anthropic/"
                                 "llm_global_opinions into data/globalopinionqa/"),
}


def load_benchmark(name_or_path: str, root: str | Path = ".") -> tuple[str, pd.DataFrame]:
    """``(benchmark name, distributions)`` for a benchmark name or a file in a benchmark's format.

    A path is read by its format: a CSV with ``selections`` is
    GlobalOpinionQA's, anything else SubPOP's processed columns (``.jsonl``,
    ``.csv``, ``.parquet``). A name is looked for on the hub first (unless
    ``HF_HUB_OFFLINE`` is set), then under ``root`` where its repository
    puts it; neither gives a :class:`ConfigError` naming what to download and
    where to put it.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path.stem, read_benchmark_file(path)
    benchmark = BENCHMARKS.get(name_or_path.lower())
    if benchmark is None:
        raise ConfigError(f"unknown benchmark {name_or_path!r}: not a file, and not one of {', '.join(BENCHMARKS)}")
    frame, why = _from_hub(benchmark)
    if frame is not None:
        return benchmark.name, _convert(frame, benchmark.kind, benchmark.hub or benchmark.name)
    local = sorted(p for pattern in benchmark.local for p in Path(root).glob(pattern))
    if not local:
        raise ConfigError(f"benchmark {benchmark.name}: no local copy ({', '.join(benchmark.local)} under "
                          f"{Path(root).resolve()}) and {why}; download {benchmark.fetch}")
    return benchmark.name, pd.concat([read_benchmark_file(p, benchmark.kind) for p in local], ignore_index=True)


def _from_hub(benchmark: Benchmark) -> tuple[pd.DataFrame | None, str]:
    """The benchmark's table from the Hugging Face hub, or ``(None, why not)``."""
    if benchmark.hub is None:
        return None, "it is not on the Hugging Face hub"
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return None, "the hub is off (HF_HUB_OFFLINE is set)"
    try:
        from datasets import load_dataset

        dataset = load_dataset(benchmark.hub, data_files=benchmark.hub_files, split="train")
    except Exception as exc:  # noqa: BLE001 - no network, gated, renamed: fall back to a local copy, say why
        return None, f"the hub did not give it ({type(exc).__name__}: {str(exc)[:200]})"
    return dataset.to_pandas(), ""


def read_benchmark_file(path: str | Path, kind: str | None = None) -> pd.DataFrame:
    """One local benchmark file as distributions (``kind`` None: told by its columns)."""
    from demoscope.tables import read_table

    path = Path(path)
    frame = read_table(path, "benchmark file", (".jsonl", ".csv", ".parquet"))
    if kind is None:
        kind = "globalopinionqa" if "selections" in frame else "subpop"
    return _convert(frame, kind, str(path))


def _convert(frame: pd.DataFrame, kind: str, source: str) -> pd.DataFrame:
    if kind == "globalopinionqa":
        return global_opinions_distributions(frame, source)
    missing = [c for c in ("qkey", "attribute", "group", "responses", "refusal_rate", "ordinal") if c not in frame]
    if missing:
        raise ConfigError(f"benchmark {source}: lacks SubPOP's column(s) {', '.join(missing)}")
    frame = frame.copy()
    for column in ("options", "responses", "ordinal"):
        if column in frame:
            frame[column] = [ast.literal_eval(v) if isinstance(v, str) else list(v) for v in frame[column]]
    for column in ("qkey", "attribute", "group", "question"):
        if column in frame:
            frame[column] = frame[column].astype(str)
    return frame


def _selections(text: str) -> dict[str, list[float]]:
    """GlobalOpinionQA's ``selections`` cell: ``defaultdict(<class 'list'>, {...})`` or a plain dict literal."""
    inner = re.sub(r"^\s*defaultdict\(<class '\w+'>,\s*", "", text)
    if inner != text:
        inner = inner.rstrip().removesuffix(")")
    return ast.literal_eval(inner)


def global_opinions_distributions(frame: pd.DataFrame, source: str = "GlobalOpinionQA") -> pd.DataFrame:
    """GlobalOpinionQA rows -> one distributions row per (question, country), attribute ``COUNTRY``.

    ``qkey`` is ``GOQA_<row>`` (the file has no key). A last option that is a
    non-answer ("Don't know/Refused", ...) becomes the refusal share and the
    other shares are renormalised, as SubPOP scores refusals; otherwise the
    refusal share is 0. Options are taken as ordered (ordinal 1..K) as the
    surveys list them; the paper scores with Jensen-Shannon, which does not
    use the order.
    """
    missing = [c for c in ("question", "options", "selections") if c not in frame]
    if missing:
        raise ConfigError(f"GlobalOpinionQA file {source}: lacks column(s) {', '.join(missing)}")
    rows = []
    for i, record in enumerate(frame.itertuples(index=False)):
        try:
            options = [str(o) for o in (ast.literal_eval(record.options) if isinstance(record.options, str)
                                        else record.options)]
            selections = _selections(record.selections) if isinstance(record.selections, str) else record.selections
        except (ValueError, SyntaxError) as exc:
            raise ConfigError(f"GlobalOpinionQA file {source}, row {i}: cannot parse options/selections ({exc})") \
                from None
        refusal_last = bool(options) and _NON_ANSWER.search(options[-1]) is not None
        answers = options[:-1] if refusal_last else options
        for country, shares in selections.items():
            shares = np.asarray(shares, dtype=float)
            if shares.size != len(options):
                raise ConfigError(f"GlobalOpinionQA file {source}, row {i}, {country}: {shares.size} shares for "
                                  f"{len(options)} options")
            kept = shares[: len(answers)]
            total = shares.sum()
            refusal = float(shares[-1] / total) if refusal_last and total > 0 else 0.0
            responses = kept / kept.sum() if kept.sum() > 0 else np.full(len(answers), 1.0 / len(answers))
            rows.append({"qkey": f"GOQA_{i:04d}", "attribute": COUNTRY, "group": str(country),
                         "question": str(record.question), "options": [*answers, "Refused"],
                         "responses": responses.tolist(), "refusal_rate": refusal,
                         "ordinal": [float(k + 1) for k in range(len(answers))]})
    return pd.DataFrame(rows)
