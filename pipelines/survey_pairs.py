"""Preference pairs from survey answers, for tuning a model toward some groups' opinions (one process, no Ray).

    demoscope survey-pairs --split runs/prepare/opnqa_QA_train.parquet --out runs/pairs/left.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from pydantic import Field

from demoscope.config.base import JobConfig
from demoscope.errors import ConfigError
from demoscope.io import atomic_write
from demoscope.pipelines.command import Job, main_for

SUMMARY = "DPO pairs from surveys: prefer what some groups answer (e.g. Democrats) over others"
DESCRIPTION = """\
Turn a prepared survey split into DPO pairs that prefer what the --toward groups
answer over what the --away groups answer: per question, `chosen` is the option
the toward side favours most over the away side, `rejected` the reverse,
and the prompt is the unsteered question. Tuning on them with
`demoscope train --objective dpo` moves the model's own opinions toward that side,
which `demoscope audit --test-file` then measures (PoliTune's left/right idea,
grounded in survey data instead of generated answers).

writes  OUT (JSONL: prompt, chosen, rejected) and OUT's config beside it

example demoscope survey-pairs --split runs/demo/prepare/opnqa_QA_train.parquet --out runs/pairs/left.jsonl
        demoscope survey-pairs --split runs/demo/prepare/opnqa_QA_train.parquet --toward POLPARTY=Republican \\
            --away POLPARTY=Democrat --out runs/pairs/right.jsonl
        demoscope train --objective dpo --train-file runs/pairs/left.jsonl --out runs/dpo-left
"""


class SurveyPairsConfig(JobConfig):
    """``demoscope survey-pairs``: DPO preference pairs from what some groups answer over others."""

    split: str = Field(..., description="a prepared split (from `demoscope prepare`), CSV or Parquet")
    toward: list[str] = Field(["POLPARTY=Democrat", "POLIDEOLOGY=Liberal"], description="ATTRIBUTE=group to prefer")
    away: list[str] = Field(["POLPARTY=Republican", "POLIDEOLOGY=Conservative"], description="ATTRIBUTE=group "
                            "to move from")
    min_gap: float = Field(0.02, ge=0, description="skip questions where the sides differ by less")
    out: str = Field("runs/pairs/left.jsonl", description="output JSONL (prompt, chosen, rejected)")


def _groups(specs: list[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for spec in specs:
        attribute, sep, group = spec.partition("=")
        if not sep or not attribute or not group:
            raise ConfigError(f"--{flag} {spec!r}: expected ATTRIBUTE=group, e.g. POLPARTY=Democrat")
        pairs.append((attribute, group))
    return pairs


def run(config: SurveyPairsConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope survey-pairs`` command: :func:`survey_pairs`, exit code 0."""
    survey_pairs(config)
    return 0


def survey_pairs(config: SurveyPairsConfig) -> pd.DataFrame:
    """Write the pairs (prompt, chosen, rejected) to ``config.out`` and return them; the Python API."""
    from rich.console import Console

    from demoscope.config import save_config
    from demoscope.surveys.finetuning import read_split
    from demoscope.training.preference_data import survey_preferences

    split = read_split(config.split)  # checked row by row: a bad share is an error line, not a wrong pair
    pairs = survey_preferences(split, _groups(config.toward, "toward"), _groups(config.away, "away"), config.min_gap)
    out = Path(config.out)
    atomic_write(out, lambda tmp: pairs.to_json(tmp, orient="records", lines=True))
    save_config(config, out.with_name(out.stem + ".config.yaml"))
    Console(soft_wrap=True).print(f"{len(pairs)} pairs from {split['qkey'].nunique()} questions -> {out}")
    return pairs


JOB = Job(name="survey-pairs", description=DESCRIPTION, config=SurveyPairsConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
