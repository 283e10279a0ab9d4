"""Preference pairs from survey answers, for tuning a model toward some groups' opinions (one process, no Ray).

    demoscope survey-pairs --split runs/prepare/opnqa_QA_train.parquet --out runs/pairs/left.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path

from demoscope.config import SurveyPairsConfig
from demoscope.errors import ConfigError
from demoscope.io import atomic_write
from demoscope.pipelines.command import Job, main_for

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
        demoscope survey-pairs --split ... --toward POLPARTY=Republican --away POLPARTY=Democrat --out runs/pairs/right.jsonl
        demoscope train --objective dpo --train-file runs/pairs/left.jsonl --out runs/dpo-left
"""


def _groups(specs: list[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for spec in specs:
        attribute, sep, group = spec.partition("=")
        if not sep or not attribute or not group:
            raise ConfigError(f"--{flag} {spec!r}: expected ATTRIBUTE=group, e.g. POLPARTY=Democrat")
        pairs.append((attribute, group))
    return pairs


def run(config: SurveyPairsConfig, address: str | None = None, verbose: bool = False) -> int:
    """Write the pairs and say how many questions made it."""
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
    return 0


JOB = Job(name="survey-pairs", description=DESCRIPTION, config=SurveyPairsConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
