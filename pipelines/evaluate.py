"""Score a model on a prepared test set with Ray Data batch inference, then report Wasserstein distances.

The driver reads and checks the test set with pandas (CSV prompts span lines,
which Ray Data's CSV reader rejects), then Ray Data streams it through scoring
actors (each holds the model once: Transformers on CPU, vLLM on GPU, behind
the same scorer protocol); the driver counts rows as they come back and writes
the predictions, sorted, into OUT/predictions in one atomic step. The report
reads back only the distance columns. A small local run (at most
``in_process_rows`` rows, one replica, no cluster) scores the same way in the
driver itself: Ray's start-up was most of its time.

    demoscope evaluate --test-file runs/prepare/opnqa_QA_test.parquet --model tiny:llama \\
        --adapter runs/train/adapter --out runs/eval
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field, model_validator

from demoscope.config import save_config
from demoscope.config.base import JobConfig, LetterLogprobs
from demoscope.errors import ConfigError
from demoscope.models.names import choose_backend
from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.evaluate_report import (
    CALIBRATED,
    ORDER_AVERAGED,
    calibrated_systems,
    report,
    steerability_systems,
    systems_for,
)
from demoscope.pipelines.runtime import ACTOR_POOL_OPTIONS, check_resources, init_ray

SUMMARY = "score a model on a test set with Ray Data; Wasserstein report with baselines"
DESCRIPTION = """\
Score a model (optionally with a LoRA adapter) on a prepared test set the way
SubPOP evaluates: the probabilities of the option letters after "Answer:"
(with and without a leading space, summed, renormalised over the scored
options) are compared with the human distribution by the range-normalised
ordinal Wasserstein distance (WD). Baselines: uniform over the ordinal
options, and the base model with the adapter disabled.

reads   a prepared split (`demoscope prepare`, .parquet or .csv: qkey, input_prompt,
        output_dist, attribute, group, ordinal), or a distributions file (`demoscope
        aggregate`'s .parquet/.csv, or SubPOP-format CSV), told apart by its columns:
        its prompts are rendered with --steering (QA by default), every row a test row.
        The file is checked row by row before anything starts; a bad row is one error
        line naming the file, row, question, group and column (exit 2).
writes  OUT/predictions/part-00000.parquet (per row: qkey, attribute, group, output_dist,
        ordinal, dist_<system>, wd_<system>; sorted by qkey, attribute, group; replaced
        whole, or left as it was if the run fails), OUT/report.md, OUT/metrics.json
        (mean WD overall and per subpopulation with n and 95% intervals that resample
        questions, --bootstrap row for rows; paired intervals for each difference,
        e.g. tuned - base; relative gap reduction), OUT/wd_by_group.png,
        OUT/wd_histogram.png, OUT/config.yaml
progress rows scored, rate and time left: a bar on a terminal, a line every 30 s in a log

--baselines-only: no model, no Ray, seconds: `uniform` (equal mass on the options
        with ordinal >= 0) and `other_groups` (each (question, group) row predicted
        by the unweighted mean of the human distributions of every other
        subpopulation on the same question; NaN where a question has one group).

beyond WD: TV, Jensen-Shannon, KL and the SimBench-style score per system; the human noise
        floor where rows carry n_eff (a `noise_floor` row: what a perfect model would score);
        --calibrate K adds <system>_calibrated (temperature per group, fitted on K questions,
        tested on the others); --letter-rule max reads letters as OpinionQA does.
benchmarks: --benchmark subpop-eval|subpop-train|opinionqa|globalopinionqa (or a file in
        their format) instead of --test-file; written to OUT/benchmark/NAME as distributions.

weak-to-strong: --guide-model SMALL --guide-adapter SMALL_TUNED steers --model (large, untuned)
        with p ∝ p_large * (p_tuned / p_untuned)^beta and reports it against the large model
        alone and the small tuned model alone.

example demoscope evaluate --test-file runs/prepare/opnqa_QA_test.parquet --model tiny:llama \\
            --adapter runs/train/adapter --out runs/eval
        demoscope evaluate --test-file runs/agg/distributions.parquet --baselines-only --out runs/base
        demoscope evaluate --benchmark globalopinionqa --steering PORTRAY --model smollm2:135m \\
            --calibrate 20 --out runs/goqa
        demoscope evaluate --test-file ... --model meta-llama/Llama-2-70b-hf \\
            --guide-model meta-llama/Llama-2-7b-hf --guide-adapter runs/train/adapter --guide-beta 1.0
        SubPOP-Eval exclusions: --config configs/evaluate/subpop-eval.yaml
"""


class SystemSpec(JobConfig):
    """One system of a leaderboard: a model and, optionally, its LoRA adapter."""

    model: str = Field(description="Hugging Face id, local path, or tiny:llama")
    adapter: str | None = Field(None, description="LoRA adapter folder")


class EvaluateConfig(JobConfig):
    """Score a model (+ adapter) on a prepared split or a distributions file; Wasserstein report with baselines."""

    test_file: str | None = Field(None, description="what to score: a prepared split "
                                  "(.parquet or .csv from `demoscope prepare`) or a distributions file "
                                  "(`demoscope aggregate`'s, or SubPOP-format CSV), told apart by its columns")
    benchmark: str | None = Field(None, description="score a published benchmark instead of --test-file: "
                                  "subpop-train, subpop-eval, opinionqa, globalopinionqa (from the hub, or the local "
                                  "copy under data/ where its release puts it), or a file in one of their formats")
    steering: Literal["QA", "BIO", "PORTRAY"] = Field(
        "QA", description="steering template of the prompts rendered from a distributions file "
        "(ignored for a prepared split)")
    baselines_only: bool = Field(False, description="score only the baselines that need no model "
                                 "(uniform, other groups), without Ray, in seconds")
    model: str = Field("tiny:llama", description="Hugging Face id, local path, or tiny:llama / tiny:gpt2")
    adapter: str | None = Field(None, description="LoRA adapter folder (e.g. OUT/adapter of `demoscope train`)")
    out: str = Field("runs/evaluate", description="output folder")
    backend: Literal["auto", "transformers", "vllm"] = Field("auto", description="auto: vLLM on GPU if installed, "
                                                             "else Transformers")
    batch_size: int = Field(16, ge=1, description="prompts per forward pass")
    option_orders: int = Field(1, ge=1, le=10, description="score every item with its options in K orders (as "
                               "given, reversed, cyclic shifts), map the answers back, report the spread between "
                               "orders and add the order-averaged <system>_order_avg")
    letter_rule: Literal["sum", "max"] = Field(
        "sum", description="an option letter's probability from its two tokens ('A', ' A'): sum (SubPOP) or max "
                           "(OpinionQA's scorer)")
    letter_logprobs: LetterLogprobs = "auto"
    top_k: int = Field(128, ge=1, description="vLLM top-k mode: log-probs read per prompt (SubPOP: 128)")
    replicas: int = Field(1, ge=1, description="scoring actors (one GPU each with use_gpu)")
    in_process_rows: int = Field(2000, ge=0, description="score up to this many rows in this process, without "
                                 "starting Ray (one replica, no --address or RAY_ADDRESS; with use_gpu only where "
                                 "this process sees a GPU): a few questions take seconds; 0: always Ray Data")
    use_gpu: bool = Field(False, description="give each scoring actor a GPU")
    compare_base: bool = Field(True, description="with an adapter, also score the base model (adapter disabled)")
    steerability: bool = Field(True, description="also score each question without its steering prefix and report, "
                               "per group, whether steering moved the answer closer to the group")
    exclude_questions: list[str] | None = Field(None, description="question keys left out of the report "
                                                "(e.g. SubPOP's high-relevance ones)")
    n_boot: int = Field(1000, ge=10, description="bootstrap resamples for the 95% intervals")
    bootstrap: Literal["question", "row"] = Field(
        "question", description="question: resample questions (clustered, the default); "
        "row: resample rows as if independent")
    seed: int = Field(0, description="bootstrap seed")
    guide_model: str | None = Field(None, description="weak-to-strong mode: "
                                    "a small model whose tuned/untuned pair steers --model")
    guide_adapter: str | None = Field(None, description="the small model's tuned LoRA adapter "
                                      "(untuned = adapter disabled)")
    guide_beta: float = Field(1.0, ge=0, description="steering strength: p ∝ p_large * (p_tuned / p_untuned)^beta")
    noise_floor_draws: int = Field(200, ge=10, description="multinomial draws per row for the human noise floor "
                                   "(rows with n_eff: aggregate's distributions, prepare's splits)")
    min_n_eff: float = Field(30.0, ge=0, description="rows whose effective respondents are fewer are counted and "
                             "flagged in the report")
    calibrate: int | None = Field(None, ge=1, description="fit a temperature on K labelled questions at a time and "
                                  "score the calibrated answers on the other questions (question-level "
                                  "cross-validation); adds a <system>_calibrated row")
    calibrate_by: Literal["group", "global"] = Field("group", description="one temperature per subpopulation, or "
                                                     "one for all")


    systems: dict[str, SystemSpec] = Field(
        default_factory=dict, description="a leaderboard of several systems on the same rows, instead of --model/"
        "--adapter: systems.NAME.model=ID and optionally systems.NAME.adapter=FOLDER, once per system")

    @model_validator(mode="after")
    def _one_input(self) -> EvaluateConfig:
        if (self.test_file is None) == (self.benchmark is None):
            raise ValueError("give one input: --test-file FILE or --benchmark NAME_OR_PATH")
        if self.systems and (self.adapter or self.guide_model or self.baselines_only):
            raise ValueError("systems.NAME.* (a leaderboard) replaces --model/--adapter; it does not combine with "
                             "--adapter, --guide-model or --baselines-only")
        taken = {"uniform", "other_groups", "noise_floor", "model", "tuned", "base"}
        for name in self.systems:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", name) or name in taken:
                raise ValueError(f"system name {name!r}: use letters, digits and '-' (it names columns), and none "
                                 f"of {', '.join(sorted(taken))}")
        return self


class OptionScoringActor:
    """A Ray Data UDF: holds a model (and its adapter) and scores blocks of prompts.

    Blocks arrive checked and parsed by the driver (lists, not CSV literals).
    In weak-to-strong mode (``guide_model``) it holds the large model and the
    small tuned/untuned pair, and adds the steered distribution computed from
    their three answers (no extra forward pass). A ``_row`` column passes
    through, so the driver can restore its own order.
    """

    def __init__(self, model: str, adapter: str | None, backend: str, batch_size: int, compare_base: bool,
                 guide_model: str | None = None, guide_adapter: str | None = None, guide_beta: float = 1.0,
                 steerability: bool = False, letter_logprobs: str = "auto", top_k: int = 128,
                 letter_rule: str = "sum", option_orders: int = 1):
        from demoscope.models.names import resolve_model
        from demoscope.models.scoring import option_scorers
        from demoscope.models.weak_to_strong import weak_to_strong_scorers

        self.beta, self.steerability, self.option_orders = guide_beta, steerability, option_orders
        path = resolve_model(model)
        if guide_model is not None:
            self.scorers = weak_to_strong_scorers(path, resolve_model(guide_model), guide_adapter, backend, batch_size,
                                                  letter_logprobs, top_k, letter_rule)
        else:
            self.scorers = option_scorers(path, adapter, backend, batch_size, compare_base, letter_logprobs, top_k,
                                          letter_rule)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from demoscope.metrics.opinion import row_distances, uniform_distances
        from demoscope.models.weak_to_strong import steer

        batch = batch.reset_index(drop=True)
        for column in ("output_dist", "ordinal"):  # Arrow hands list cells over as numpy arrays
            batch[column] = [list(v) for v in batch[column]]
        n_options = [len(o) for o in batch["ordinal"]]
        keep = ("_row", "qkey", "attribute", "group", "output_dist", "ordinal", "n", "n_eff")
        out = batch[[c for c in keep if c in batch]].copy()
        for name, scorer in self.scorers.items():
            if getattr(scorer, "mode", None) == "top-k":  # vLLM's top-k letters: keep how much each row missed
                dists, _, out[f"missed_{name}"] = scorer.score_with_coverage(list(batch["input_prompt"]), n_options)
            else:
                dists = scorer.score(list(batch["input_prompt"]), n_options)
            out[f"dist_{name}"] = [d.tolist() for d in dists]
            out[f"wd_{name}"] = row_distances(out, f"dist_{name}")
            if self.option_orders > 1:  # the same items with the options reordered, answers mapped back
                from demoscope.surveys.option_orders import score_in_orders

                averaged, out[f"order_tv_{name}"] = score_in_orders(scorer, list(batch["input_prompt"]), n_options,
                                                                    self.option_orders, dists)
                out[f"dist_{name}{ORDER_AVERAGED}"] = [d.tolist() for d in averaged]
                out[f"wd_{name}{ORDER_AVERAGED}"] = row_distances(out, f"dist_{name}{ORDER_AVERAGED}")
            if self.steerability:
                self._score_unsteered(name, scorer, batch, out, n_options)
        if "small_untuned" in self.scorers:
            steered = steer(out["dist_large"], out["dist_small_tuned"], out["dist_small_untuned"], self.beta)
            out["dist_steered"] = [d.tolist() for d in steered]
            out["wd_steered"] = row_distances(out, "dist_steered")
        out["wd_uniform"] = uniform_distances(out)
        return out

    @staticmethod
    def _score_unsteered(name: str, scorer, batch: pd.DataFrame, out: pd.DataFrame, n_options: list[int]) -> None:
        """The same questions without their steering prefix, scored once per distinct question in the block."""
        import numpy as np

        from demoscope.metrics.opinion import row_distances
        from demoscope.surveys.prompts import unsteered_prompt

        plain = [unsteered_prompt(p) for p in batch["input_prompt"]]
        unique = dict(zip(plain, n_options))
        scored = dict(zip(unique, scorer.score(list(unique), list(unique.values()))))
        out[f"dist_{name}_unsteered"] = [scored[p].tolist() for p in plain]
        distances = row_distances(out, f"dist_{name}_unsteered")
        distances[np.array([p == q for p, q in zip(plain, batch["input_prompt"])])] = np.nan  # nothing was steered
        out[f"wd_{name}_unsteered"] = distances


def score_rows(predictions: pd.DataFrame, config: EvaluateConfig) -> pd.DataFrame:
    """The per-row scores beyond WD: TV/JS/KL per system, the noise floor, and ``--calibrate``'s calibrated WD."""
    from demoscope.metrics.calibration import cross_validated_calibration
    from demoscope.metrics.row_scores import add_distances, add_noise_floor, humans

    predictions = add_noise_floor(add_distances(predictions, systems_for(config)), config.noise_floor_draws,
                                  config.seed)
    for system in calibrated_systems(config):
        frame = predictions.assign(human=humans(predictions), model=list(predictions[f"dist_{system}"]))
        by = ("attribute", "group") if config.calibrate_by == "group" else ()
        try:
            calibrated = cross_validated_calibration(frame, "model", config.calibrate, "wd", by, config.seed)
        except ValueError as exc:  # fewer questions than k + 1
            raise ConfigError(f"--calibrate {config.calibrate}: {exc}") from None
        predictions[f"wd_{system}{CALIBRATED}"] = calibrated["after"].to_numpy()
        predictions[f"temperature_{system}"] = calibrated["temperature"].to_numpy()
    return predictions


@dataclass(frozen=True)
class EvaluationResult:
    """What an evaluation leaves: its folder, the per-row predictions (Parquet folder) and metrics.json's content."""

    out: Path
    predictions: Path
    metrics: dict


def run(config: EvaluateConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope evaluate`` command: :func:`evaluate`, exit code 0 (errors raise)."""
    evaluate(config, address, verbose)
    return 0


def in_process(config: EvaluateConfig, rows: int, address: str | None) -> bool:
    """Whether to score in this process instead of Ray Data actors: few rows, one replica, no cluster to reach.

    Starting Ray, its actor and the actor's imports is most of a small
    evaluation's time (bench/evaluate.py); one replica on this machine
    gains nothing from them. A GPU run stays here only if this process sees
    a GPU.
    """
    if rows > config.in_process_rows or config.replicas != 1 or address or os.environ.get("RAY_ADDRESS"):
        return False
    if config.use_gpu:
        import torch

        return torch.cuda.is_available()
    return True


def _score(rows: pd.DataFrame, config: EvaluateConfig, backend: str, console, model: str, adapter: str | None,
           label: str | None = None, local: bool = False) -> pd.DataFrame:
    """:class:`OptionScoringActor` over ``rows``: in this process (``local``) or one Ray Data pass, in row order."""
    from demoscope.models.names import resolve_model
    from demoscope.pipelines.progress import RowProgress

    leaderboard = label is not None  # a leaderboard system: no base model, no unsteered answers
    for name in filter(None, [model, config.guide_model]):
        resolve_model(name)  # build a tiny model once, before the actors start
    actor_kwargs = {
        "model": model, "adapter": str(Path(adapter).resolve()) if adapter else None,
        "backend": backend, "batch_size": config.batch_size,
        "compare_base": config.compare_base and not leaderboard,
        "guide_model": config.guide_model, "guide_beta": config.guide_beta,
        "steerability": steerability_systems(config) != [] and not leaderboard,
        "letter_logprobs": config.letter_logprobs, "top_k": config.top_k,
        "letter_rule": config.letter_rule, "option_orders": config.option_orders,
        "guide_adapter": str(Path(config.guide_adapter).resolve()) if config.guide_adapter else None}
    # Blocks of at most 256 rows, and at least one per replica, so every replica gets work;
    # progress moves block by block.
    chunk = max(config.batch_size, min(256, -(-len(rows) // config.replicas)))
    rows = rows.assign(_row=range(len(rows)))
    blocks = [rows.iloc[i:i + chunk] for i in range(0, len(rows), chunk)]
    shown = f"{label} ({model}{f' + {adapter}' if adapter else ''})" if label else model
    where = "in this process" if local else f"{config.replicas} replica(s)"
    console.print(f"scoring {len(rows):,} rows of {config.test_file} with {shown} "
                  f"({where}, {backend}); loading the model first")
    if local:
        scorer = OptionScoringActor(**actor_kwargs)
        scored = (scorer(block) for block in blocks)
    else:
        import ray.data

        scored = ray.data.from_pandas(blocks).map_batches(
            OptionScoringActor, fn_constructor_kwargs=actor_kwargs, batch_size=chunk, batch_format="pandas",
            concurrency=config.replicas, num_gpus=1 if config.use_gpu else 0, num_cpus=1, **ACTOR_POOL_OPTIONS,
        ).iter_batches(batch_format="pandas", batch_size=None)
    parts = []
    with RowProgress(len(rows), "scoring", console=console) as progress:
        for part in scored:
            parts.append(part)
            progress.advance(len(part))
    return pd.concat(parts, ignore_index=True).sort_values("_row").drop(columns="_row").reset_index(drop=True)


def evaluate(config: EvaluateConfig, address: str | None = None, verbose: bool = False) -> EvaluationResult:
    """Read and check the input in this process, score it, then report.

    Scoring runs in Ray Data actors, in this process for a small local run
    (:func:`in_process`), or not at all for the baselines alone.

    The Python API of ``demoscope evaluate``: composite jobs and notebooks
    call it and read the result.

    Every user error (a missing file, a malformed row, a missing adapter)
    is raised before Ray starts. Predictions are sorted by (qkey, attribute,
    group, prompt) whatever order Ray returns them in, and land in
    OUT/predictions whole or not at all.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from rich.console import Console

    from demoscope.io import atomic_dir
    from demoscope.metrics.baselines import baseline_predictions
    from demoscope.surveys.finetuning import evaluation_rows

    if not config.baselines_only:
        if config.adapter and not (Path(config.adapter) / "adapter_config.json").exists():
            raise ConfigError(f"adapter folder {config.adapter} has no adapter_config.json "
                              f"(expected OUT/adapter of `demoscope train`)")
        if config.guide_model is not None:
            if config.adapter is not None:
                raise ConfigError("weak-to-strong mode steers the large --model itself: "
                                  "give --guide-adapter, not --adapter")
            if not config.guide_adapter or not (Path(config.guide_adapter) / "adapter_config.json").exists():
                raise ConfigError(f"--guide-model needs --guide-adapter, the small model's tuned LoRA folder with "
                                  f"adapter_config.json (got {config.guide_adapter!r})")
    for name, spec in config.systems.items():
        if spec.adapter and not (Path(spec.adapter) / "adapter_config.json").exists():
            raise ConfigError(f"systems.{name}.adapter {spec.adapter} has no adapter_config.json")
    out = Path(config.out).resolve()
    if config.benchmark:  # read in its own format, written as distributions beside the results
        from demoscope.surveys import write_distributions
        from demoscope.surveys.benchmarks import load_benchmark

        name, distributions = load_benchmark(config.benchmark)
        written = write_distributions(distributions, out / "benchmark" / name)
        config = config.model_copy(update={"test_file": str(written["parquet"]), "benchmark": None})
    rows, notes = evaluation_rows(config.test_file, config.steering, config.exclude_questions or [])
    if rows.empty:
        raise ConfigError(f"no rows left to score in {config.test_file} (all excluded?)")
    if config.calibrate and config.baselines_only:
        raise ConfigError("--calibrate rescales a model's answers; --baselines-only scores none")
    if config.calibrate and config.calibrate >= rows["qkey"].nunique():
        raise ConfigError(f"--calibrate {config.calibrate} needs more questions than that to test on: "
                          f"{config.test_file} has {rows['qkey'].nunique()}")
    console = Console(soft_wrap=True)
    for note in notes:
        console.print(f"skipped: {note}")
    with atomic_dir(out / "predictions") as staging:
        if config.baselines_only:
            predictions = baseline_predictions(rows)
        else:
            backend = choose_backend(config.backend, config.use_gpu)
            local = in_process(config, len(rows), address)
            if not local:
                init_ray(address, verbose)
                check_resources("evaluate", config.replicas, config.use_gpu, unit="the scoring", flag="replicas")
            if config.systems:  # a leaderboard: each system scores the same rows, one pass each
                predictions = None
                for name, spec in config.systems.items():
                    scored = _score(rows, config, backend, console, spec.model, spec.adapter, name, local)
                    source = "tuned" if spec.adapter else "model"
                    scored = scored.rename(columns={f"{kind}_{source}": f"{kind}_{name}"
                                                    for kind in ("dist", "wd", "missed")})
                    predictions = scored if predictions is None else predictions.join(
                        scored[[c for c in scored if c.endswith(f"_{name}")]])
            else:
                predictions = _score(rows, config, backend, console, config.model, config.adapter, local=local)
        predictions = score_rows(predictions, config)
        # Ray hands back Arrow-typed pandas columns whose pandas metadata pandas cannot read back: write plain Arrow.
        table = pa.Table.from_pandas(predictions, preserve_index=False).replace_schema_metadata(None)
        pq.write_table(table, staging / "part-00000.parquet")
    # after the predictions: a failed run leaves the last good config beside them
    save_config(config, out / "config.yaml")
    return EvaluationResult(out, out / "predictions", report(config, out / "predictions", out))


JOB = Job(name="evaluate", description=DESCRIPTION, config=EvaluateConfig, run=run,
          flags={"exclude_questions": "--exclude-question"})


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
