"""The end-to-end demo on a local Ray: the whole SubPOP loop on a synthetic survey world.

synthetic survey -> aggregate (Ray tasks) -> prepare (QA steering, split by
question) -> fine-tune a tiny Llama with LoRA (Ray Train, 2 CPU workers) ->
evaluate on held-out questions (Ray Data) against the uniform baseline and
the untuned model.

    make demo        # = demoscope demo --out runs/demo
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from pydantic import Field

from demoscope.config import load_config, save_config
from demoscope.config.base import JobConfig
from demoscope.io import atomic_write, atomic_write_text
from demoscope.models.names import TINY_PREFIX
from demoscope.pipelines import aggregate as aggregate_job
from demoscope.pipelines import evaluate as evaluate_job
from demoscope.pipelines import prepare as prepare_job
from demoscope.pipelines import synth_survey
from demoscope.pipelines import train as train_job
from demoscope.pipelines.aggregate import AggregateConfig
from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.evaluate import EvaluateConfig
from demoscope.pipelines.prepare import PrepareConfig
from demoscope.pipelines.synth_survey import SynthSurveyConfig
from demoscope.pipelines.train_opinion import OpinionTrainConfig
from demoscope.reports import markdown_table, plot_group_distributions
from demoscope.surveys.summary import group_summary, most_divided_questions

CALIBRATION_QUESTIONS = 5  # the labelled questions each calibration fold fits on

SUMMARY = "the end-to-end demo on a local Ray: synthesise, aggregate, prepare, train, evaluate"
DESCRIPTION = """\
Run the SubPOP loop end to end on a local Ray: write a synthetic survey world
(Pew ATP-style .sav waves + a GSS-style .dta with real question texts),
aggregate it into distributions per question and subpopulation, build
QA-steered fine-tuning sets split by question, fine-tune the model with
LoRA on Ray Train (2 CPU workers), and evaluate it on held-out questions
against the uniform baseline and the untuned model, with steerability per
group. A few minutes on 2 cores with the tiny random Llama; under 30 with the
real SmolLM2-135M-Instruct (--model smollm2:135m), which samples rows.

writes  OUT/world/, OUT/aggregate/, OUT/prepare/, OUT/train/ (adapter, metrics,
        TensorBoard), OUT/evaluate/ (predictions, report, plots),
        OUT/party_ideology.png, OUT/report.md

example demoscope demo --out runs/demo
        demoscope demo --out runs/demo-real --model smollm2:135m     # = make demo-real
        demoscope demo --out runs/demo-big --waves 6 --respondents 3000 --epochs 6
"""

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Random tiny models learn fast at a high rate; a pretrained one needs a gentler rate and fewer, smaller steps.
TRAIN_PRESETS = {"tiny": CONFIGS / "tiny-demo.yaml", "pretrained": CONFIGS / "pretrained-demo.yaml"}
# SmolLM2-135M on 2 CPU cores (2 Ray Train workers, 1 thread each): ~1.2 s per training row per epoch and
# ~0.3 s per scored prompt; with these caps the whole demo took 12 minutes (bench/RESULTS.md).
REAL_MODEL_ROWS = {"train": 320, "val": 80, "test": 200}

PLOT_GROUPS = ["Democrat", "Republican", "Liberal", "Moderate", "Conservative"]


class DemoConfig(JobConfig):
    """The end-to-end demo: synthesise, aggregate, prepare, fine-tune, evaluate, on a local Ray."""

    out: str = Field("runs/demo", description="output folder")
    waves: int = Field(3, ge=1, description="synthetic ATP waves")
    respondents: int = Field(2000, ge=100, description="respondents per wave")
    seed: int = Field(7, description="random seed")
    model: str = Field("tiny:llama", description="model to fine-tune: tiny:llama (random, seconds) or smollm2:135m "
                       "(real, pretrained; the demo then samples rows to finish in under 30 minutes on 2 cores)")
    epochs: int | None = Field(None, ge=1, description="fine-tuning epochs "
                               "(default: the training preset's, 4 tiny / 2 real)")
    num_workers: int = Field(2, ge=1, description="Ray Train workers")
    max_train_rows: int | None = Field(None, ge=0, description="train on at most this many rows, whole questions "
                                       "sampled at random, and validate on a quarter as many "
                                       "(default: all for tiny models, 320 for real ones; 0: all)")
    max_test_rows: int | None = Field(None, ge=0, description="evaluate at most this many held-out rows, "
                                      "whole questions (default: all for tiny models, 200 for real ones; 0: all)")


def run(config: DemoConfig, address: str | None = None, verbose: bool = False) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True, width=max(Console().width, 110))
    out = Path(config.out)
    save_config(config, out / "config.yaml")
    started = time.perf_counter()

    console.rule("1. synthesise a survey world")
    world = synth_survey.synthesise(SynthSurveyConfig(out=str(out / "world"), waves=config.waves,
                                                      respondents=config.respondents, seed=config.seed))

    console.rule("2. aggregate on Ray")
    aggregated = aggregate_job.aggregate(AggregateConfig(inputs=[str(out / "world" / "surveys")],
                                                         out=str(out / "aggregate"), codebook=str(world.codebook_path)),
                                         address, verbose)
    if aggregated.failed or not aggregated.written:  # our own files: a failure here is a bug, not bad input
        raise RuntimeError(f"the demo's synthetic surveys did not aggregate: {aggregated.summary['issues']}")
    distributions, truth = aggregated.distributions, world.truth

    console.rule("3. prepare fine-tuning sets (QA steering, split by question)")
    prepared = prepare_job.prepare(PrepareConfig(distributions=str(out / "aggregate" / "distributions.parquet"),
                                                 out=str(out / "prepare"), steering="QA", train_ratio=0.7,
                                                 val_ratio=0.1, test_ratio=0.2, seed=config.seed))
    splits = _sample_splits(config, prepared.splits["QA"], out / "sampled", console)

    console.rule("4. fine-tune on Ray Train")
    train = _train_config(config, splits, out)
    trained = train_job.train(train, address, verbose)
    epochs = train.epochs

    console.rule("5. evaluate on held-out questions (Ray Data)")
    # Calibration on 5 labelled questions at a time, where the held-out set has enough questions to test on.
    questions = pd.read_parquet(splits["test"], columns=["qkey"])["qkey"].nunique()
    evaluation = EvaluateConfig(test_file=str(splits["test"]), model=config.model, adapter=str(trained.artifact),
                                out=str(out / "evaluate"), replicas=config.num_workers,
                                calibrate=CALIBRATION_QUESTIONS if questions > CALIBRATION_QUESTIONS else None)
    scores = evaluate_job.evaluate(evaluation, address, verbose).metrics

    console.rule("6. report")
    table = group_summary(distributions, truth)
    shown = Table(*table.columns, title="aggregated distributions per subpopulation (TV: total variation to the truth)")
    for row in table.itertuples(index=False):
        shown.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(shown)
    qkeys = most_divided_questions(distributions, "Democrat", "Republican", k=4)
    plot = plot_group_distributions(distributions, qkeys, PLOT_GROUPS, out / "party_ideology.png")
    report = _report(config, distributions, table, qkeys, plot, scores, time.perf_counter() - started, epochs)
    atomic_write_text(out / "report.md", report)
    console.print(f"report: {out / 'report.md'}  plot: {plot}")
    return 0


def _is_tiny(config: DemoConfig) -> bool:
    return config.model.startswith(TINY_PREFIX)


def _sample_splits(config: DemoConfig, splits: dict[str, Path], out: Path, console) -> dict[str, Path]:
    """Cap the train, validation and test splits (whole questions) where the model is too slow for all rows; say so."""
    from demoscope.surveys.finetuning import sample_questions

    limits = {name: 0 if _is_tiny(config) else rows for name, rows in REAL_MODEL_ROWS.items()}  # 0: all rows
    if config.max_train_rows is not None:  # validation keeps the default caps' proportion (a quarter)
        limits["train"], limits["val"] = (config.max_train_rows,
                                          config.max_train_rows and max(1, config.max_train_rows // 4))
    if config.max_test_rows is not None:
        limits["test"] = config.max_test_rows
    if not any(limits.values()):
        return splits
    sampled = {name: out / path.name for name, path in splits.items()}
    for name in ("train", "val", "test"):
        frame = pd.read_parquet(splits[name])
        kept = sample_questions(frame, limits[name], seed=config.seed)
        if len(kept) < len(frame):
            console.print(f"[yellow]sampling[/] {name}: {len(kept):,} of {len(frame):,} rows "
                          f"({kept.qkey.nunique()} of {frame.qkey.nunique()} questions, whole questions at random) "
                          f"so that {config.model} fits the demo's time on CPU; "
                          f"--max-{'test' if name == 'test' else 'train'}-rows 0 keeps all")
        atomic_write(sampled[name], lambda path, kept=kept: kept.to_parquet(path, index=False))
    return sampled


def _train_config(config: DemoConfig, splits: dict[str, Path], out: Path) -> OpinionTrainConfig:
    """The demo's training preset for this kind of model (tiny or pretrained), pointed at this run's splits."""
    preset = TRAIN_PRESETS["tiny" if _is_tiny(config) else "pretrained"]
    flags = {"model": config.model, "num_workers": config.num_workers, "seed": config.seed,
             "train_file": str(splits["train"]), "val_file": str(splits["val"]), "out": str(out / "train")}
    if config.epochs is not None:
        flags["epochs"] = config.epochs
    return load_config(OpinionTrainConfig, preset, flags=flags)


def _report(config: DemoConfig, distributions: pd.DataFrame, table: pd.DataFrame, qkeys: list[str], plot: Path,
            scores: dict, seconds: float, epochs: int) -> str:
    overall = table["mean_tv_to_truth"].mean()
    wd = {row["system"]: row for row in scores["overall"]}
    gaps = scores["gap_reduction"]
    return f"""# Demoscope demo report

{config.waves} synthetic ATP waves and one GSS file, {config.respondents:,} respondents each (seed {config.seed}),
aggregated on a local Ray into **{len(distributions):,} distributions** over
{distributions.qkey.nunique()} questions and {distributions.group.nunique()} subpopulations; `{config.model}`
fine-tuned with LoRA on 70% of the questions ({epochs} epochs, {config.num_workers} Ray Train workers) and
evaluated on the held-out 20%{_sampling_note(config)}; {seconds:.0f} s in all.

## Fine-tuned model on held-out questions

Mean Wasserstein distance to the human distributions ({scores['rows']:,} held-out rows,
{scores['questions']} questions; lower is better; 95% bootstrap intervals):

| system | mean WD | 95% CI |
|---|---:|---|
{chr(10).join(f"| {name} | {row['mean']:.4f} | [{row['low']:.4f}, {row['high']:.4f}] |" for name, row in wd.items())}

{_floor_and_calibration_lines(scores)}{_steerability_lines(scores)}
Fine-tuning lowers the mean WD by {gaps.get("uniform", float("nan")):.1%} relative to the uniform baseline and by
{gaps.get("base", float("nan")):.1%} relative to the untuned model. Details: `evaluate/report.md`.

Because the world is synthetic, the true population distributions are known:
the mean total-variation distance between the weighted estimates and the
truth is **{overall:.3f}** (it shrinks with group size, as sampling error should).

## Per subpopulation

{markdown_table(table)}

## The questions that divide Democrats and Republicans most

![party and ideology]({plot.name})

{chr(10).join(f"- `{q}`: {distributions[distributions.qkey == q].question.iloc[0]}" for q in qkeys)}

Files: `aggregate/distributions.parquet` (and `.csv` in SubPOP's format),
`aggregate/summary.json` (what was skipped and why), `world/` (the survey files).
"""


def _floor_and_calibration_lines(scores: dict) -> str:
    """What the `noise_floor` and `tuned_calibrated` rows of the table mean, with the numbers."""
    lines = []
    floor = scores.get("noise_floor", {})
    if floor.get("available"):
        lines.append(f"- `noise_floor`: a model that knew every population exactly would still score a mean WD of "
                     f"{floor['wd']:.4f} against these survey estimates (their sampling error at a median "
                     f"{floor['median_n_eff']:.0f} effective respondents); the fine-tuned model is "
                     f"{floor['excess_wd'].get('tuned', float('nan')):+.4f} above it.")
    for gain in scores.get("calibration", {}).get("gain", []):
        lines.append(f"- `tuned_calibrated`: the fine-tuned answers with one temperature per group, fitted on "
                     f"{scores['calibration']['k']} labelled questions at a time and scored on the others; "
                     f"uncalibrated minus calibrated WD {gain['mean']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}].")
    return "\n".join(lines) + "\n\n" if lines else ""


def _steerability_lines(scores: dict) -> str:
    lines = [f"- `{system}`: steering moved the answer closer to the group on {table[-1]['closer_share']:.0%} of "
             f"{table[-1]['rows']:,} rows (mean WD gain {table[-1]['mean_gain']:+.4f})"
             for system, table in scores.get("steerability", {}).items()]
    return "Steerability (steered vs. the same question unsteered):\n\n" + "\n".join(lines) + "\n" if lines else ""


def _sampling_note(config: DemoConfig) -> str:
    if _is_tiny(config) and not (config.max_train_rows or config.max_test_rows):
        return ""
    train = config.max_train_rows if config.max_train_rows is not None else REAL_MODEL_ROWS["train"]
    test = config.max_test_rows if config.max_test_rows is not None else REAL_MODEL_ROWS["test"]
    return f" (whole questions sampled: at most {train or 'all'} train and {test or 'all'} test rows)"


JOB = Job(name="demo", description=DESCRIPTION, config=DemoConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
