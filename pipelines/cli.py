"""The ``demoscope`` command: one subcommand per job (the Ray layer's entry point; the library never imports it).

Job modules are imported only when their subcommand runs, so ``--help`` is
instant and Ray starts only for jobs that need it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module under demoscope.pipelines, or a full module path, that defines JOB; one-line summary).
# The summaries live here, not in the job modules, so that `demoscope --help` imports no job.
JOBS = {
    "aggregate": ("aggregate", "survey files -> weighted distributions per question and subpopulation"),
    "synth-survey": ("synth_survey", "write a seeded synthetic survey world (ATP .sav waves + a GSS .dta)"),
    "prepare": ("prepare", "distributions -> steered fine-tuning CSVs (SubPOP format), split by question"),
    "survey-pairs": ("survey_pairs",
                     "DPO pairs from surveys: prefer what some groups answer (e.g. Democrats) over others"),
    "train": ("train", "training on Ray Train: LoRA opinion-kl/wd, dpo/sft (TRL), distill students; DDP or FSDP, "
                       "resumable"),
    "select": ("demoscope.tune.select",
               "which data sources to fine-tune on: GradEx first-order estimates, subsets as Ray Tune trials"),
    "sweep": ("demoscope.tune.sweep",
              "hyperparameter sweeps of a training job on Ray Tune (grid, random, ASHA); best config exported"),
    "evaluate": ("evaluate", "score a model on a test set with Ray Data; Wasserstein report with baselines"),
    "audit": ("audit", "political-bias audit: Political Compass style agreement and opinion alignment, base vs tuned"),
    "generate": ("generate", "weak-to-strong decoding (base, best-of-N, chunk beam search, EFT) with gold rewards, "
                             "on Ray Data"),
    "distill": ("distill", "teacher soft labels -> baseline and distilled students -> their bias on the EEC "
                          "(Ray Data + Train)"),
    "distill-opinions": ("distill_opinions",
                         "fit a student to a teacher's option distributions; per-group WD of both to the humans"),
    "bias": ("bias", "gender and race bias of sentiment systems on the Equity Evaluation Corpus (paired t-tests)"),
    "serve": ("demoscope.serve.run", "the opinions HTTP API on Ray Serve (POST /v1/opinions, /v1/models, /healthz, "
                                     "/docs)"),
    "demo": ("demo", "the end-to-end demo on a local Ray: synthesise, aggregate, prepare, train, evaluate"),
}


def job_module(name: str) -> str:
    """The module that defines subcommand ``name``'s ``JOB``."""
    module = JOBS[name][0]
    return module if "." in module else f"demoscope.pipelines.{module}"


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
    for name, (_, summary) in JOBS.items():
        sub.add_parser(name, help=summary, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in JOBS:
        parser.parse_args(argv or ["--help"])  # prints help or "invalid choice" and exits
        return 2
    from demoscope.pipelines.command import build_parser, run_parsed

    job = importlib.import_module(job_module(argv[0])).JOB
    job_parser = build_parser(job, argparse.ArgumentParser(prog=f"demoscope {argv[0]}"))
    return run_parsed(job, job_parser.parse_intermixed_args(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
