"""The ``demoscope`` command: one subcommand per job (the Ray layer's entry point; the library never imports it).

Each job module declares its ``JOB`` and a one-line ``SUMMARY``. Job modules
are imported only when their subcommand runs (``demoscope --help`` reads the
summaries from their source), so help is instant and Ray starts only for jobs
that need it.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import sys
from pathlib import Path

# subcommand -> the module (under demoscope.pipelines, or a full module path) that defines its JOB and SUMMARY.
JOBS = {
    "aggregate": "aggregate",
    "synth-survey": "synth_survey",
    "prepare": "prepare",
    "survey-pairs": "survey_pairs",
    "train": "train",
    "select": "demoscope.tune.select",
    "sweep": "demoscope.tune.sweep",
    "evaluate": "evaluate",
    "audit": "audit",
    "generate": "generate",
    "distill": "distill",
    "distill-opinions": "distill_opinions",
    "bias": "bias",
    "serve": "demoscope.serve.run",
    "demo": "demo",
}


def job_module(name: str) -> str:
    """The module that defines subcommand ``name``'s ``JOB``."""
    module = JOBS[name]
    return module if "." in module else f"demoscope.pipelines.{module}"


def summary(name: str) -> str:
    """Job ``name``'s one-line ``SUMMARY``, read from its module's source: importing every job (torch, Ray,
    pandas) would make ``demoscope --help`` take seconds."""
    origin = importlib.util.find_spec(job_module(name)).origin
    for node in ast.parse(Path(origin).read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SUMMARY" for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{job_module(name)} defines no SUMMARY")


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
    for name in JOBS:
        sub.add_parser(name, help=summary(name), add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in JOBS:
        parser.parse_args(argv or ["--help"])  # prints help or "invalid choice" and exits
        return 2
    from demoscope.pipelines.command import parse_and_run

    job = importlib.import_module(job_module(argv[0])).JOB
    return parse_and_run(job, argv[1:], f"demoscope {argv[0]}")


if __name__ == "__main__":
    sys.exit(main())
