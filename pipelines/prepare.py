"""Turn distributions into SubPOP's steered fine-tuning CSVs, split by question.

One process of pandas, no Ray: SubPOP-Train is about 71K (question, group)
rows, and rendering every prompt for all four steering types takes seconds,
less than Ray Data's fixed start-up and scheduling cost would add. The prompt
and split logic lives in ``demoscope.surveys.prompts`` and
``demoscope.surveys.finetuning``; this module reads, writes and reports.

    demoscope prepare --distributions runs/agg/distributions.parquet --out runs/prepare
    python -m demoscope.pipelines.prepare --distributions subpop-train.csv --steering QA --out runs/prepare
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from demoscope.config import save_config
from demoscope.config.base import JobConfig
from demoscope.errors import ConfigError
from demoscope.io import atomic_write
from demoscope.pipelines.command import Job, main_for
from demoscope.surveys import read_distributions
from demoscope.surveys.finetuning import COUNT_COLUMNS, SPLITS, check_ratios, prepare_splits, screen_distributions
from demoscope.surveys.output import list_literal
from demoscope.surveys.prompts import SteeringType, load_steering_prompts, steering_group, steering_prefix

SUMMARY = "distributions -> steered fine-tuning CSVs (SubPOP format), split by question"
DESCRIPTION = """\
Build SubPOP's fine-tuning data: every (question, subpopulation) distribution
becomes a prompt steered to that subpopulation (QA, BIO or PORTRAY template)
and a target distribution. Questions, not rows, are split into train/val/test
(seeded, sorted first so the split does not depend on row order).

reads   the distributions.parquet that `demoscope aggregate` writes, or a SubPOP-format
        CSV (qkey, attribute, group, question, options, responses,
        refusal_rate, ordinal; lists as Python literals); OpinionQA group names
        (CITIZEN Yes/No, MARITAL 'Never been married', POLPARTY Other) are mapped
        to the steering prompts' wording
checks  every row before writing anything: shares finite and >= 0, responses summing
        to 1, refusal_rate in [0, 1], one option per response plus the refusal,
        1..len(responses) ordinal positions, one row per (qkey, attribute, group);
        a bad file is one error line naming the file, row, CSV line, question, group
        and column (exit 2). Questions with over 10 options are skipped with a note.
writes  OUT/opnqa_{TYPE}_{train,val,test}.csv and .parquet for each steering
        TYPE (QA, BIO, PORTRAY, ALL; ALL = one row each of BIO, QA, PORTRAY),
        OUT/config.yaml; an empty split still gets a file with the header

columns qkey, input_prompt, output_dist (responses + [refusal_rate], not
        renormalised), attribute, group (steering wording), ordinal

example demoscope prepare --distributions runs/agg/distributions.parquet --out runs/prepare
        demoscope prepare --distributions opinionqa.csv --steering QA \\
            --train-ratio 0 --val-ratio 0 --test-ratio 1 --out runs/opinionqa
"""


class PrepareConfig(JobConfig):
    """Distributions -> SubPOP's steered fine-tuning CSVs, split by question."""

    distributions: str = Field(description="distributions.parquet from `demoscope aggregate`, or a SubPOP-format CSV")
    out: str = Field("runs/prepare", description="output folder")
    steering: Literal["QA", "BIO", "PORTRAY", "ALL"] | None = Field(
        None, description="steering type QA, BIO, PORTRAY or ALL (default: all four, as SubPOP writes them)"
    )
    train_ratio: float = Field(0.9, ge=0, le=1, description="share of questions in train")
    val_ratio: float = Field(0.1, ge=0, le=1, description="share of questions in val")
    test_ratio: float = Field(0.0, ge=0, le=1, description="share of questions in test (the rest after rounding)")
    seed: int = Field(42, description="seed of the question split and the row shuffle")
    shuffle: bool = Field(True, description="row-shuffle each split "
                          "(SubPOP's default; --no-shuffle keeps sorted order)")
    exclude_questions: list[str] | None = Field(None, description="question keys to drop before splitting")


def read_input(path: str) -> pd.DataFrame:
    """Read our Parquet or a SubPOP-format CSV (:func:`read_distributions`: its errors name the file)."""
    if not Path(path).is_file():  # names the flag to give, which the library's message cannot
        raise ConfigError(f"distributions file {path} not found (give --distributions FILE.parquet or FILE.csv)")
    return read_distributions(path)


def check_groups(distributions: pd.DataFrame) -> None:
    """Fail before writing anything if a group has no steering prompt (SpecError lists the valid ones)."""
    prompts = load_steering_prompts()
    for attribute, group in distributions[["attribute", "group"]].drop_duplicates().itertuples(index=False):
        steering_prefix("QA", attribute, steering_group(attribute, group), prompts)


def write_split(frame: pd.DataFrame, stem: Path) -> None:
    """Write ``stem.parquet`` and ``stem.csv`` (lists as Python literals, as SubPOP's trainer reads them)."""
    import pyarrow as pa

    # An explicit schema so that an empty split still has list<double> columns, not nulls
    text, floats = pa.large_string(), pa.list_(pa.float64())
    fields = [("qkey", text), ("input_prompt", text), ("output_dist", floats), ("attribute", text), ("group", text),
              ("ordinal", floats)]
    schema = pa.schema(fields + [(c, pa.float64()) for c in COUNT_COLUMNS if c in frame])  # n, n_eff where known
    atomic_write(stem.with_suffix(".parquet"), lambda tmp: frame.to_parquet(tmp, index=False, schema=schema))
    csv = frame.assign(output_dist=frame["output_dist"].map(list_literal), ordinal=frame["ordinal"].map(list_literal))
    atomic_write(stem.with_suffix(".csv"), lambda tmp: csv.to_csv(tmp, index=False))


@dataclass(frozen=True)
class PrepareResult:
    """The fine-tuning sets written: one Parquet (and CSV) file per steering type and split."""

    out: Path
    splits: dict[str, dict[str, Path]]  # steering type -> split (train/val/test) -> .parquet file
    rows: dict[str, dict[str, int]]  # split -> steering type -> rows
    questions: dict[str, int]  # split -> questions
    skipped: list[str]  # distribution rows left out, with the reason

    def split(self, name: str, steering: str = "QA") -> Path:
        """The Parquet file of one split (``train``, ``val``, ``test``) of one steering type."""
        return self.splits[steering][name]


def run(config: PrepareConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope prepare`` command: :func:`prepare`, exit code 0."""
    prepare(config)
    return 0


def prepare(config: PrepareConfig) -> PrepareResult:
    """Read, check and screen, split, render and write every steering type; print a summary; the Python API.

    Excluded questions are dropped before the checks, so excluding a broken
    question is a way past it.
    """
    ratios = (config.train_ratio, config.val_ratio, config.test_ratio)
    check_ratios(*ratios)
    distributions = read_input(config.distributions)
    excluded = set(config.exclude_questions or [])
    present = excluded & set(distributions["qkey"]) if "qkey" in distributions else set()
    distributions = distributions[~distributions["qkey"].isin(present)] if present else distributions
    usable, skipped = screen_distributions(distributions, source=config.distributions)
    if usable.empty:
        raise ConfigError(f"no usable distribution rows in {config.distributions} after exclusions and skips")
    check_groups(usable)
    types = [SteeringType(config.steering)] if config.steering else list(SteeringType)
    out = Path(config.out)
    rows: dict[str, dict[str, int]] = {name: {} for name in SPLITS}
    questions: dict[str, int] = {}
    splits: dict[str, dict[str, Path]] = {}
    for steering in types:
        # SubPOP reseeds before each type, so every type gets the same question split.
        for name, frame in prepare_splits(usable, steering, ratios, config.seed, config.shuffle).items():
            write_split(frame, out / f"opnqa_{steering.value}_{name}")
            splits.setdefault(steering.value, {})[name] = out / f"opnqa_{steering.value}_{name}.parquet"
            rows[name][steering.value] = len(frame)
            questions[name] = int(frame["qkey"].nunique())
    save_config(config, out / "config.yaml")
    print(f"{usable['qkey'].nunique()} questions, {len(usable)} (question, group) rows "
          f"from {config.distributions} -> {out}")
    for name in SPLITS:
        per_type = ", ".join(f"{kind} {count}" for kind, count in rows[name].items())
        print(f"  {name:<5} {questions[name]:>6} questions; rows: {per_type}")
    if excluded:
        missing = len(excluded - present)
        print(f"excluded {len(present)} of {len(excluded)} --exclude-question key(s) ({missing} not in the input)")
    for line in skipped:
        print(f"skipped: {line}")
    return PrepareResult(out, splits, rows, questions, skipped)


JOB = Job(
    name="prepare",
    description=DESCRIPTION,
    config=PrepareConfig,
    run=run,
    flags={"exclude_questions": "--exclude-question"},
)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
