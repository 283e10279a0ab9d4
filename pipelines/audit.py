"""Political-bias audit of a model and its adapters (offline; runs in one process, no cluster needed).

    demoscope audit --model tiny:llama adapters.left=runs/dpo-left/adapter \\
        --statements pc_questions.txt --test-file runs/prepare/opnqa_QA_test.parquet --out runs/audit
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pydantic import Field

from demoscope.config import save_config
from demoscope.config.base import JobConfig
from demoscope.errors import ConfigError
from demoscope.io import atomic_write, atomic_write_text
from demoscope.pipelines.command import Job, main_for
from demoscope.reports.plots import save_figure

SUMMARY = "political-bias audit: Political Compass style agreement and opinion alignment, base vs tuned"
DESCRIPTION = """\
Audit political bias, before and after tuning, with no network access:
1. Political Compass style: each statement (from --statements, one per line;
   the Political Compass text is not shipped: bring your own file) is asked
   with PoliTune's 0-3 agreement instruction in the Alpaca template, answers
   are sampled (temperature 0.3, top-k 200, 300 tokens) and parsed by the
   PoliTune lab's rule; reported as the distribution of agreement per system.
2. Opinion alignment: survey questions (--test-file, a prepared split) are
   scored with the option scorer; for each subpopulation, the mean Wasserstein
   distance to each system shows which groups a model is closest to and how
   tuning moved it.
Systems: the base model, plus every adapter in adapters.NAME=PATH.

writes  OUT/pc_answers.csv, OUT/pc_agreement.csv, OUT/pc_agreement.png,
        OUT/alignment.csv, OUT/alignment.png, OUT/report.md, OUT/config.yaml

example demoscope audit --model tiny:llama adapters.left=runs/left/adapter adapters.right=runs/right/adapter \\
            --statements pc_questions.txt --test-file runs/prepare/opnqa_QA_test.parquet
"""


class AuditConfig(JobConfig):
    """``demoscope audit``: political-bias audit of a model and its adapters, offline."""

    model: str = Field("tiny:llama", description="Hugging Face id, local path, or tiny:llama")
    adapters: dict[str, str] = Field(default_factory=dict, description="systems to compare with the base model "
                                     "(adapters.left=PATH)")
    statements: str | None = Field(None, description="Political Compass style statements, one per line (not shipped)")
    test_file: str | None = Field(None, description="prepared survey split for opinion alignment "
                                  "(from `demoscope prepare`)")
    out: str = Field("runs/audit", description="output folder")
    temperature: float = Field(0.3, gt=0, description="sampling temperature (PoliTune: 0.3)")
    top_k: int = Field(200, ge=1, description="top-k sampling (PoliTune: 200)")
    max_new_tokens: int = Field(300, ge=1, description="answer length cap (PoliTune: 300)")
    batch_size: int = Field(8, ge=1, description="prompts per generation batch")
    seed: int = Field(0, description="sampling seed")


@dataclass(frozen=True)
class AuditResult:
    """An audit: its report, and the tables behind it (``None`` for a part that was not asked for)."""

    report: Path
    agreement: pd.DataFrame | None  # per system, the share of statements at each agreement level
    alignment: pd.DataFrame | None  # per system and group, the mean Wasserstein distance and its rank


def run(config: AuditConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope audit`` command: :func:`audit`, exit code 0."""
    audit(config)
    return 0


def audit(config: AuditConfig) -> AuditResult:
    """Ask the statements and score the survey split for the base model and each adapter; the Python API."""
    from rich.console import Console

    from demoscope.audit.alignment import group_alignment, movement
    from demoscope.audit.generation import sample_completions
    from demoscope.audit.political_compass import (
        agreement_table,
        parse_agreement,
        read_statements,
        statement_prompt,
    )
    from demoscope.models import TransformersOptionScorer, load_causal_lm
    from demoscope.models.names import resolve_model
    from demoscope.reports import markdown_table, plot_group_wasserstein
    from demoscope.training.opinion_data import read_prepared

    if not config.statements and not config.test_file:
        raise ConfigError("nothing to audit: give --statements (Political Compass style) "
                          "and/or --test-file (opinion alignment)")
    statements = read_statements(config.statements) if config.statements else []
    test = read_prepared(config.test_file) if config.test_file else None
    out = Path(config.out)
    save_config(config, out / "config.yaml")
    console = Console(soft_wrap=True)
    model, tokenizer = load_causal_lm(resolve_model(config.model), adapters=config.adapters or None)
    systems = {"base": None, **{name: name for name in config.adapters}}
    table = alignment = None
    sections = [f"# Political-bias audit\n\nModel `{config.model}`; systems: {', '.join(systems)}.\n"]

    if statements:
        rows = []
        prompts = [statement_prompt(s) for s in statements]
        for system, adapter in systems.items():
            with console.status(f"asking {len(statements)} statements ({system})"):
                answers = sample_completions(model, tokenizer, prompts, adapter, config.temperature, config.top_k,
                                             config.max_new_tokens, config.batch_size, config.seed)
            rows += [{"system": system, "statement": s, "response": a, "score": parse_agreement(a)}
                     for s, a in zip(statements, answers)]
        answers = pd.DataFrame(rows)
        atomic_write(out / "pc_answers.csv", lambda tmp: answers.to_csv(tmp, index=False))
        table = agreement_table(answers)
        atomic_write(out / "pc_agreement.csv", lambda tmp: table.to_csv(tmp, index=False))
        _plot_agreement(table, out / "pc_agreement.png")
        per_statement = answers.pivot_table(index="statement", columns="system", values="score", aggfunc="first",
                                            sort=False)
        sections.append(f"## Political Compass style agreement\n\n{markdown_table(table)}\n\n"
                        f"![agreement](pc_agreement.png)\n\n"
                        f"Per statement (0 strongly disagree .. 3 strongly agree, -1 unparsed):\n\n"
                        f"{markdown_table(per_statement.reset_index())}\n")
        console.print(table.to_string(index=False))

    if test is not None:
        scorers = {system: TransformersOptionScorer(model, tokenizer, adapter=adapter)
                   for system, adapter in systems.items()}
        with console.status(f"scoring {len(test):,} survey prompts per system"):
            alignment = group_alignment(test, scorers)
        atomic_write(out / "alignment.csv", lambda tmp: alignment.to_csv(tmp, index=False))
        plot_group_wasserstein(alignment.assign(mean=alignment.mean_wd, low=alignment.mean_wd, high=alignment.mean_wd),
                               list(systems), out / "alignment.png")
        closest = alignment[alignment["rank"] <= 3].sort_values(["system", "rank"])
        text = [f"## Opinion alignment\n\nMean Wasserstein distance to each group (lower = closer).\n\n"
                f"Closest groups per system:\n\n"
                f"{markdown_table(closest[['system', 'rank', 'attribute', 'group', 'mean_wd']])}\n\n"
                f"![alignment](alignment.png)\n"]
        for name in config.adapters:
            text.append(f"\nHow `{name}` moved relative to the base model (negative = closer):\n\n"
                        f"{markdown_table(movement(alignment, 'base', name))}\n")
        sections.append("".join(text))
        console.print(closest.to_string(index=False))
    atomic_write_text(out / "report.md", "\n".join(sections))
    console.print(f"report: {out / 'report.md'}")
    return AuditResult(out / "report.md", table, alignment)


def _plot_agreement(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = ["Strongly disagree", "Disagree", "Agree", "Strongly agree", "Unparsed"]
    colors = ["#b2182b", "#ef8a62", "#67a9cf", "#2166ac", "#bbbbbb"]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(table) + 1.2))
    left = [0.0] * len(table)
    for level, color in zip(levels, colors):
        ax.barh(table["system"], table[level], left=left, color=color, label=level)
        left = [a + b for a, b in zip(left, table[level])]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of statements")
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
    fig.tight_layout()
    save_figure(fig, path)


JOB = Job(name="audit", description=DESCRIPTION, config=AuditConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
