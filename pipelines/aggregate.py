"""Aggregate survey files into opinion distributions on Ray.

Each file is one block: a Ray task reads it and reduces it to partial weighted
counts (``demoscope.surveys.reduce_file``); the driver streams the partials in
as they finish (a bounded number in flight, so memory follows the largest
file, not the number of files), adds them up and writes SubPOP's rows.

Why tasks and not Ray Data here: survey files are few and small, and Ray
Data's executor cost more than the work itself (20 waves: 1.6 s with a Ray
Data ``map`` against 0.7 s with tasks, read floor 0.55 s; see
``bench/RESULTS.md``). Ray Data stays for the millions-of-prompts inference
stage. Groupbys on the small count tables stay in pandas.

    demoscope aggregate --input "runs/synthetic" --out runs/agg
    ray job submit --working-dir . -- python -m demoscope.pipelines.aggregate --input data/ --out runs/agg
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from pydantic import Field

from demoscope.config.base import JobConfig
from demoscope.errors import ConfigError
from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.runtime import init_ray
from demoscope.surveys import (
    AggregateInputs,
    CountAccumulator,
    FilePartial,
    Issue,
    finalize,
    load_subpopulations,
    reduce_file,
    write_distributions,
)
from demoscope.surveys.readers import SURVEY_SUFFIXES

SUMMARY = "survey files -> weighted distributions per question and subpopulation"
DESCRIPTION = """\
Aggregate survey microdata into weighted answer distributions, one row per
(question, subpopulation), as SubPOP builds them.

reads   SPSS .sav (Pew ATP), Stata .dta (GSS), CSV or Parquet files; ATP and
        GSS are recognised from their weight columns, other surveys need --spec
writes  OUT/distributions.parquet, OUT/distributions.csv (SubPOP format),
        OUT/summary.json (files, respondents, what was skipped), OUT/config.yaml;
        all replaced together, and nothing written when no distribution could be
        computed (the previous outputs stay as they were)

columns qkey, attribute, group, question, options, responses, refusal_rate,
        ordinal, n, n_eff (Kish), weight_sum, source

example demoscope synth-survey --out runs/synthetic --waves 2
        demoscope aggregate --input "runs/synthetic/surveys/ATP W26.sav" --input runs/synthetic/surveys/GSS2022.dta \\
            --codebook runs/synthetic/codebook.json --out runs/agg --subpopulations 61
"""


class AggregateConfig(JobConfig):
    """Survey files -> weighted answer distributions per (question, subpopulation)."""

    inputs: list[str] = Field(default_factory=list, description="survey files (.sav/.dta/.csv/.parquet) "
                              "or folders of them")
    out: str = Field("runs/aggregate", description="output folder")
    subpopulations: str = Field("22", description="'22' or '61' (SubPOP's tables) or a CSV with attribute,group")
    codebook: str | None = Field(None, description="codebook JSON in SubPOP's refined_qkey_dict.json format")
    spec: str | None = Field(None, description="survey spec YAML for surveys other than Pew ATP / GSS")
    questions: list[str] | None = Field(None, description="only these question keys (default: every question)")
    keep_going: bool = Field(False, description="exit 0 even when a whole file failed")
    progress: bool = Field(True, description="show a progress bar")


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, folders expanded to the survey files inside them (sorted)."""
    if not inputs:
        raise ConfigError("no input files: give --input PATH (a survey file or a folder of them)")
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in SURVEY_SUFFIXES)
            if not found:
                raise ConfigError(f"folder {path} holds no survey files ({', '.join(SURVEY_SUFFIXES)})")
            paths.extend(found)
        else:
            paths.append(path)  # a missing file is reported per file, with the others still aggregated
    return paths


@dataclass(frozen=True)
class AggregateResult:
    """What an aggregation made: the distributions (also in ``out``, unless none could be computed) and a summary."""

    out: Path
    distributions: pd.DataFrame  # one row per (question, subpopulation); empty when no file gave any
    summary: dict  # files, failed_files, respondents, questions, rows, issues (as OUT/summary.json)
    written: bool  # False: nothing was computed, so ``out`` keeps whatever it held before

    @property
    def failed(self) -> list[str]:
        """Files that could not be read at all."""
        return self.summary["failed_files"]


def compute(config: AggregateConfig, address: str | None = None, verbose: bool = False):
    """Run the aggregation on Ray and return ``(distributions, accumulator)`` without writing anything."""
    files = expand_inputs(config.inputs)
    inputs = AggregateInputs.build(
        load_subpopulations(config.subpopulations), config.spec, config.codebook, config.questions
    )
    ray = init_ray(address, verbose)
    reduce_task = ray.remote(reduce_file)
    shared = ray.put(inputs)  # specs and codebooks travel once, not once per file
    in_flight_limit = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    pending = list(reversed(files))
    running: dict = {}  # object ref -> path
    acc = CountAccumulator()
    with _progress(len(files), enabled=config.progress) as advance:
        while pending or running:
            while pending and len(running) < in_flight_limit:
                path = str(pending.pop())
                running[reduce_task.remote(path, shared)] = path
            (done,), _ = ray.wait(list(running), num_returns=1)
            path = running.pop(done)
            try:
                partial = ray.get(done)
            except ray.exceptions.RayError as exc:  # a worker died (e.g. out of memory): lose this file only
                partial = FilePartial(path, issues=[Issue(path, f"worker failed: {type(exc).__name__}", fatal=True)])
            acc.add(partial)
            advance(partial.respondents)
    frame, issues = finalize(acc.counts(), acc.questions(), inputs.subpopulations)
    acc.issues.extend(issues)
    return frame, acc


def aggregate(config: AggregateConfig, address: str | None = None, verbose: bool = False) -> AggregateResult:
    """Aggregate, write the outputs and print a summary; the Python API of ``demoscope aggregate``.

    The outputs of one run (``distributions.parquet``, ``distributions.csv``,
    ``config.yaml``, ``summary.json``) replace the previous ones together or not
    at all: all are written to staging files first and renamed into place only
    when every one is written, the summary last. A run that computes no
    distributions writes nothing, so a failed re-run into an existing ``--out``
    leaves the previous run's files byte-identical; its summary goes to the
    console only (every issue is printed then, since no summary.json records them).
    """
    frame, acc = compute(config, address, verbose)
    out = Path(config.out)
    summary = {
        "files": acc.files,
        "failed_files": acc.failed_files,
        "respondents": acc.respondents,
        "questions": int(frame["qkey"].nunique()) if len(frame) else 0,
        "rows": len(frame),
        "issues": [str(issue) for issue in acc.issues],
    }
    if len(frame):
        config_text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)  # as save_config writes it
        write_distributions(frame, out, {"config.yaml": config_text, "summary.json": json.dumps(summary, indent=2)})
    _print_summary(summary, out, frame, written=bool(len(frame)))
    return AggregateResult(out, frame, summary, written=bool(len(frame)))


def run(config: AggregateConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope aggregate`` command: :func:`aggregate`; exit 1 if nothing was computed or a file failed."""
    result = aggregate(config, address, verbose)
    if not result.written:
        kept = f"; the previous outputs in {result.out} are left unchanged" if result.out.exists() else ""
        print(f"demoscope aggregate: error: no distributions could be computed, nothing written{kept}", file=sys.stderr)
        return 1
    return 1 if result.failed and not config.keep_going else 0


def _progress(total: int, enabled: bool):
    from contextlib import contextmanager

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    @contextmanager
    def bar():
        if not enabled:
            yield lambda rows: None
            return
        columns = [TextColumn("aggregating"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                   TextColumn("{task.fields[rows]:,} rows"), TimeElapsedColumn()]
        with Progress(*columns, transient=False) as progress:
            task = progress.add_task("files", total=total, rows=0)
            seen = {"rows": 0}

            def advance(rows: int) -> None:
                seen["rows"] += rows
                progress.update(task, advance=1, rows=seen["rows"])

            yield advance

    return bar()


def _print_summary(summary: dict, out: Path, frame, written: bool) -> None:
    from rich.console import Console

    console = Console(soft_wrap=True)
    console.print(
        f"[bold]{summary['rows']:,}[/] rows ({summary['questions']} questions) from "
        f"{summary['files'] - len(summary['failed_files'])}/{summary['files']} files, "
        f"{summary['respondents']:,} respondents -> {out}"
    )
    if len(frame):
        per_group = frame.groupby(["attribute", "group"], sort=False)["n"].median()
        console.print("median respondents per question: "
                      + ", ".join(f"{g} {int(n)}" for (_, g), n in per_group.items()))
    for failed in summary["failed_files"]:
        console.print(f"[red]failed[/]: {failed}")
    issues = summary["issues"]
    if issues:
        shown = issues[:10] if written else issues  # with nothing written, the console is the only record
        where = f"all in {out / 'summary.json'}" if written else "summary.json not written"
        console.print(f"[yellow]{len(issues)} thing(s) skipped[/] ({where}):")
        for line in shown:
            console.print(f"  - {line}", markup=False, highlight=False)
        if len(issues) > len(shown):
            console.print(f"  ... and {len(issues) - len(shown)} more")


JOB = Job(
    name="aggregate",
    description=DESCRIPTION,
    config=AggregateConfig,
    run=run,
    flags={"inputs": "--input"},
)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
