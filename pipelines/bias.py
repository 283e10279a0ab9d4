"""Gender and race bias of sentiment systems on the Equity Evaluation Corpus (one process, no cluster needed).

    demoscope bias systems.teacher=runs/distill/teacher/student systems.cnn=runs/distill/students/cnn-distilled/student
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
from demoscope.pipelines.command import Job, main_for

# What the console shows of a bias run (bias and distill).
VERDICT_COLUMNS = ["system", "comparison", "mean_delta", "p_bonferroni", "verdict"]

SUMMARY = "gender and race bias of sentiment systems on the Equity Evaluation Corpus (paired t-tests)"
DESCRIPTION = """\
Score each system on the 8,640 sentences of the Equity Evaluation Corpus
(generated from Kiritchenko & Mohammad's published templates; never
downloaded) as p(positive), then compare sentences that differ only in the
person: female vs male (the paper's 1,584 pairs with name averages, or the
seed's 1,440) and African-American vs European names (144 pairs), with paired
t-tests, Bonferroni correction, and the split of differences by sign.

A system is a saved student (`demoscope train --objective distill`), a
Hugging Face sequence classifier, or a causal LM (asked with a 3-shot prompt).

writes  OUT/eec_scores.parquet, OUT/bias_statistics.csv/.md, OUT/bias_pairs.csv,
        OUT/gender_bias.png, OUT/race_bias.png, OUT/config.yaml

example demoscope bias systems.teacher=runs/distill/teacher/student \\
            systems.distilled=runs/distill/students/bow-distilled/student --out runs/bias
"""


class BiasConfig(JobConfig):
    """``demoscope bias``: gender and race bias of sentiment systems on the Equity Evaluation Corpus."""

    systems: dict[str, str] = Field(default_factory=dict, description="name=path: students, classifiers or causal LMs")
    variant: Literal["paper", "seed"] = Field("paper", description="gender pairs: paper 1,584 (name means) "
                                              "or seed 1,440")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level (Bonferroni-corrected)")
    out: str = Field("runs/bias", description="output folder")


def score_eec(systems: dict[str, str]) -> pd.DataFrame:
    """The generated EEC with one p(positive) column per system."""
    from rich.console import Console

    from demoscope.bias import generate_eec
    from demoscope.distill.systems import load_system
    from demoscope.pipelines.progress import RowProgress

    eec = generate_eec()
    sentences = eec["Sentence"].tolist()
    console = Console(soft_wrap=True)
    chunk = 1024  # a progress step; each system batches within it
    for name, path in systems.items():
        system, scores = load_system(path), []
        with RowProgress(len(sentences), f"EEC with {name}", console=console, unit="sentences") as progress:
            for start in range(0, len(sentences), chunk):
                scores.extend(system(sentences[start:start + chunk]))
                progress.advance(len(sentences[start:start + chunk]))
        eec[name] = scores
    return eec


def write_report(scored: pd.DataFrame, systems: list[str], out: Path, variant: str, alpha: float) -> pd.DataFrame:
    """Bias report files for the scored EEC; returns the overall (subset "all") statistics."""
    from demoscope.bias import write_bias_report
    from demoscope.io import atomic_write

    atomic_write(out / "eec_scores.parquet", lambda tmp: scored.to_parquet(tmp, index=False))
    paths = write_bias_report({s: scored[s].tolist() for s in systems}, out,
                              eec=scored[[c for c in scored if c not in systems]], variant=variant, alpha=alpha)
    stats = pd.read_csv(paths["statistics_csv"])
    return stats[stats["subset"] == "all"]


@dataclass(frozen=True)
class BiasResult:
    """A bias run: where its report went, the scored corpus, and the overall statistics."""

    out: Path
    scored: pd.DataFrame  # the generated EEC with one p(positive) column per system
    overall: pd.DataFrame  # one row per system and comparison over all sentences (mean_delta, p_bonferroni, verdict)


def bias(config: BiasConfig) -> BiasResult:
    """Score every system on the EEC and write the bias report; the Python API of ``demoscope bias``."""
    if not config.systems:
        raise ConfigError("no systems to audit: give systems.NAME=PATH (a student folder, classifier or causal LM)")
    out = Path(config.out)
    save_config(config, out / "config.yaml")
    scored = score_eec(config.systems)
    overall = write_report(scored, list(config.systems), out, config.variant, config.alpha)
    return BiasResult(out, scored, overall)


def run(config: BiasConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope bias`` command: :func:`bias`, then the overall verdicts on the console."""
    from rich.console import Console

    result = bias(config)
    Console(soft_wrap=True).print(result.overall[VERDICT_COLUMNS].to_string(index=False))
    return 0


JOB = Job(name="bias", description=DESCRIPTION, config=BiasConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
