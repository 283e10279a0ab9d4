"""The ``demoscope`` command: one subcommand per job.

Job modules are imported only when their subcommand runs, so ``--help`` is
instant and Ray starts only for jobs that need it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module under demoscope.pipelines (or a full module path) that defines JOB
JOBS = {
    "aggregate": "aggregate",
    "synth-survey": "synth_survey",
    "prepare": "prepare",
    "survey-pairs": "survey_pairs",
    "train": "train",
    "sweep": "demoscope.tune.sweep",
    "select": "demoscope.tune.select",
    "evaluate": "evaluate",
    "audit": "audit",
    "generate": "generate",
    "distill": "distill",
    "distill-opinions": "distill_opinions",
    "bias": "bias",
    "serve": "demoscope.serve.run",
    "demo": "demo",
}

SUMMARIES = {
    "aggregate": "survey files -> weighted distributions per question and subpopulation",
    "synth-survey": "write a seeded synthetic survey world (ATP .sav waves + a GSS .dta)",
    "prepare": "distributions -> steered fine-tuning CSVs (SubPOP format), split by question",
    "survey-pairs": "DPO pairs from surveys: prefer what some groups answer (e.g. Democrats) over others",
    "train": "training on Ray Train: LoRA opinion-kl/wd, dpo/sft (TRL), distill students; DDP or FSDP, resumable",
    "select": "which data sources to fine-tune on: GradEx first-order estimates, subsets as Ray Tune trials",
    "sweep": "hyperparameter sweeps of a training job on Ray Tune (grid, random, ASHA); best config exported",
    "evaluate": "score a model on a test set with Ray Data; Wasserstein report with baselines",
    "audit": "political-bias audit: Political Compass style agreement and opinion alignment, base vs tuned",
    "generate": "weak-to-strong decoding (base, best-of-N, chunk beam search, EFT) with gold rewards, on Ray Data",
    "distill": "teacher soft labels -> baseline and distilled students -> their bias on the EEC (Ray Data + Train)",
    "distill-opinions": "fit a student to a teacher's option distributions; per-group WD of both to the humans",
    "bias": "gender and race bias of sentiment systems on the Equity Evaluation Corpus (paired t-tests)",
    "serve": "the opinions HTTP API on Ray Serve (POST /v1/opinions, /v1/models, /healthz, /docs)",
    "demo": "the end-to-end demo on a local Ray: synthesise, aggregate, prepare, train, evaluate",
}

DESCRIPTION = """\
Demoscope measures, steers and audits what language models believe people think.

Every job also runs as a module (for `ray job submit`): `python -m demoscope.pipelines.<job>`,
`python -m demoscope.tune.sweep|select`, `python -m demoscope.serve.run`.
Run `demoscope <job> --help` for what a job reads, writes, and an example.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="demoscope", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="job", metavar="JOB")
    for name, summary in SUMMARIES.items():
        sub.add_parser(name, help=summary, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in JOBS:
        parser.parse_args(argv or ["--help"])  # prints help or "invalid choice" and exits
        return 2
    from demoscope.pipelines.command import build_parser, run_parsed

    module = JOBS[argv[0]] if "." in JOBS[argv[0]] else f"demoscope.pipelines.{JOBS[argv[0]]}"
    job = importlib.import_module(module).JOB
    job_parser = build_parser(job, argparse.ArgumentParser(prog=f"demoscope {argv[0]}"))
    return run_parsed(job, job_parser.parse_intermixed_args(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
