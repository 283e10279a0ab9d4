"""Write a seeded synthetic survey world (no Ray needed: it is one process of numpy).

    demoscope synth-survey --out runs/synthetic --waves 20 --respondents 3000 --seed 0
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from demoscope.config import save_config
from demoscope.config.base import JobConfig
from demoscope.pipelines.command import Job, main_for

if TYPE_CHECKING:
    from demoscope.surveys.synthetic import SyntheticWorld

SUMMARY = "write a seeded synthetic survey world (ATP .sav waves + a GSS .dta)"
DESCRIPTION = """\
Write a synthetic survey world whose answers depend on demographics in known,
seeded ways: Pew ATP-style SPSS waves and a GSS-style Stata file with the real
question texts, options, demographic columns and labels of the shipped SubPOP
metadata, with weights, refusals and skips.

writes  OUT/surveys/ATP W<wave>.sav (waves 26..92 are the 14 real OpinionQA
        waves, then 1001, 1002, ...), OUT/surveys/GSS2022.dta, OUT/codebook.json (SubPOP
        refined_qkey_dict format, with ordinal positions), OUT/truth.parquet
        (the true population distribution per question and SubPOP group)

example demoscope synth-survey --out runs/synthetic --waves 20 --respondents 3000 --seed 0
        demoscope aggregate --input runs/synthetic/surveys --codebook runs/synthetic/codebook.json --out runs/agg
"""


class SynthSurveyConfig(JobConfig):
    """A seeded synthetic survey world: ATP-style .sav waves and a GSS-style .dta."""

    out: str = Field("runs/synthetic", description="output folder")
    waves: int = Field(4, ge=1, description="number of ATP waves")
    respondents: int = Field(2000, ge=10, description="respondents per file")
    seed: int = Field(0, description="random seed (same seed, same world)")
    gss: bool = Field(True, description="also write a GSS-style GSS2022.dta")
    questions_per_wave: int | None = Field(None, ge=1, description="cap on questions per file")


def run(config: SynthSurveyConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope synth-survey`` command: :func:`synthesise`, exit code 0."""
    synthesise(config)
    return 0


def synthesise(config: SynthSurveyConfig) -> SyntheticWorld:
    """Write the world and print where it went; returns its files, codebook and truth (the Python API)."""
    from rich.console import Console

    from demoscope.surveys.synthetic import generate_world

    console = Console(soft_wrap=True)
    with console.status("writing synthetic survey files") as status:
        world = generate_world(
            config.out, waves=config.waves, respondents=config.respondents, seed=config.seed,
            gss=config.gss, questions_per_wave=config.questions_per_wave,
            progress=lambda message: status.update(message),
        )
    save_config(config, Path(config.out) / "config.yaml")
    console.print(f"wrote {len(world.files)} survey files, "
                  f"{world.codebook_path.name} and truth.parquet to {config.out}")
    return world


JOB = Job(name="synth-survey", description=DESCRIPTION, config=SynthSurveyConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
