"""Data-source selection by first-order estimates (GradEx) on Ray: gradients on Ray Data, subsets as Ray Tune trials.

    demoscope select --out runs/select            # the reference's noisy-addition toy, end to end
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from demoscope.config import save_config
from demoscope.config.base import JobConfig
from demoscope.errors import ConfigError
from demoscope.io import atomic_write
from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.runtime import ACTOR_POOL_OPTIONS, init_ray
from demoscope.selection.report import VERIFICATION_COLUMNS, SelectionOutcome
from demoscope.tune.select_trials import EstimateCache, GradientActor, estimator

SUMMARY = "which data sources to fine-tune on: GradEx first-order estimates, subsets as Ray Tune trials"
DESCRIPTION = """\
Which training sources are worth fine-tuning on? GradEx estimates the model
fine-tuned on any subset of sources to first order, from per-sample gradients
of a meta-trained LoRA adapter, instead of fine-tuning once per subset:
1. projected per-sample gradients of every source (Ray Data; torch.func,
   seeded Rademacher projection), stored as shards under OUT/gradients;
2. each subset's estimate (logistic regression in projected space, mapped
   back to the adapter, rescaled, validation loss) is a Ray Tune trial:
   M random subsets give each source a random-ensemble score; greedy forward
   selection adds the best source while the estimate improves;
3. verification: real fine-tunes on the chosen subset and on --verify
   random subsets, estimated vs real loss (relative error, Spearman's rho)
   and the speed-up of an estimate over a fine-tune.

--task toy is the reference's CPU-sized toy: a 2-layer GPT-2 on 5-digit
addition, sources = groups of samples, some with noisy labels; clean groups
must rank above noisy ones (its fine-tunes: the library loop as Ray tasks).
--task subpop asks which survey waves (--sources wave; GSS questions form one
source) or question topics (--sources topic, built-in taxonomy or --topics
FILE) of a prepared split to fine-tune on, for the loss on --val-file,
optionally narrowed to --target-groups and --target-questions. Each row's
target is its group's modal answer letter; verification runs the Ray Train
job (`demoscope train`) from the meta-trained adapter on each subset.

writes  OUT/gradients/ (shards + meta.json), OUT/scores.csv, OUT/trials.csv,
        OUT/greedy.csv, OUT/verification.csv, OUT/scores.png, OUT/report.md,
        OUT/metrics.json; subpop also OUT/meta-adapter, OUT/verify/<check>/

example demoscope select --n-subsets 60 --verify 2 --out runs/select
        demoscope select --task subpop --train-file runs/demo/prepare/opnqa_QA_train.parquet \\
            --val-file runs/demo/prepare/opnqa_QA_val.parquet --adapter runs/demo/train/adapter --n-subsets 8
        demoscope select --task subpop --sources topic --target-groups POLPARTY=Democrat \\
            --train-file runs/demo/prepare/opnqa_QA_train.parquet --val-file runs/demo/prepare/opnqa_QA_val.parquet
"""


class SelectConfig(JobConfig):
    """``demoscope select``: GradEx data-source selection (the noisy-addition toy, or survey waves) on Ray."""

    task: Literal["toy", "subpop"] = Field("toy", description="toy: noisy addition; "
                                           "subpop: waves or topics of a prepared split")
    train_file: str | None = Field(None, description="subpop: prepared training split whose rows form the sources")
    val_file: str | None = Field(None, description="subpop: prepared split whose loss the selection minimises")
    sources: Literal["wave", "topic"] = Field("wave", description="subpop: one source per survey wave, "
                                              "or per question topic")
    topics: str | None = Field(None, description="subpop --sources topic: YAML topic: [regex, ...] or CSV qkey,topic "
                               "(default: the built-in taxonomy)")
    target_groups: list[str] = Field(default_factory=list, description="subpop: validate only on these groups "
                                     "(name or ATTRIBUTE=name; repeatable)")
    target_questions: list[str] = Field(default_factory=list, description="subpop: validate only on these question "
                                        "keys or patterns like GUN* (repeatable)")
    model: str = Field("tiny:llama", description="subpop: the model (id, path, tiny:llama)")
    adapter: str | None = Field(None, description="subpop: meta-trained LoRA adapter (default: meta-train one briefly)")
    meta_steps: int = Field(100, ge=1, description="steps of meta-training when no adapter is given")
    verify_epochs: int = Field(2, ge=1, description="subpop: epochs of each verification run of the train job")
    verify_lr: float = Field(5e-3, gt=0, description="subpop: learning rate of each verification run")
    verify_workers: int = Field(1, ge=1, description="subpop: Ray Train workers of each verification run")
    verify_batch_size: int | None = Field(None, ge=1, description="subpop: examples per worker per step of each "
                                          "verification run "
                                          "(default: the gradient batch, 32; a real model on CPU wants ~8)")

    clean_sources: int = Field(6, ge=1, description="toy: sources with correct answers")
    noisy_sources: int = Field(4, ge=0, description="toy: sources with random answers")
    samples_per_source: int = Field(16, ge=2, description="toy: samples per source")
    project_dim: int = Field(200, ge=8, description="projected gradient dimension d")
    n_subsets: int = Field(60, ge=2, description="random subsets for the ensemble scores (one Tune trial each)")
    subset_size: float = Field(0.5, gt=0, description="sources per random subset (a fraction, or a count if >= 1)")
    verify: int = Field(2, ge=0, description="random subsets fine-tuned for real, besides the selected one")
    fine_tune_steps: int = Field(40, ge=1, description="toy: steps of each real fine-tune")
    max_concurrent_trials: int = Field(2, ge=1, description="subset trials (and gradient actors) at once")
    seed: int = Field(0, description="seed of the toy, the projection and the subsets")
    loss_weighting: Literal["sample", "token"] = Field(
        "sample", description="validation loss: each sample's token mean averaged over samples (GradEx's reference), "
                              "or averaged over all tokens (long answers weigh more)")
    out: str = Field("runs/select", description="output folder")

    @model_validator(mode="after")
    def _survey_options_need_the_survey_task(self) -> SelectConfig:
        if self.task == "toy":
            given = [name for name in ("train_file", "val_file", "adapter", "topics", "target_groups",
                                       "target_questions")
                     if getattr(self, name)] + (["sources"] if self.sources != "wave" else [])
            if given:
                raise ValueError(f"{', '.join(given)} apply to task=subpop (the toy makes its own data); "
                                 f"add --task subpop")
        return self


def run(config: SelectConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope select`` command: :func:`select`, exit code 0."""
    select(config, address, verbose)
    return 0


def select(config: SelectConfig, address: str | None = None, verbose: bool = False) -> SelectionOutcome:
    """Gradients, random-ensemble scores, greedy selection and verification fine-tunes; the Python API."""
    from rich.console import Console

    from demoscope.selection.search import (
        comparison_subsets,
        ensemble_scores,
        greedy_forward_selection,
        sample_subsets,
    )
    from demoscope.selection.toy import ToySettings, build_world

    out = Path(config.out).resolve()
    save_config(config, out / "config.yaml")
    console = Console(soft_wrap=True)
    settings = ToySettings(clean_sources=config.clean_sources, noisy_sources=config.noisy_sources,
                           samples_per_source=config.samples_per_source, project_dim=config.project_dim,
                           seed=config.seed, meta_steps=config.meta_steps,
                           loss_weighting=config.loss_weighting)
    if config.task == "subpop":
        with console.status(f"loading the model and its meta-trained adapter; one source per {config.sources}"):
            world, rows = _subpop_world(config, settings, out)
        console.print(f"{len(rows.train)} training rows in {len(world.sources)} {config.sources}s; "
                      f"{len(rows.val)} validation rows")
    else:
        with console.status("pre-training the toy model and meta-training its LoRA adapter"):
            world, rows = build_world(settings), None
    init_ray(address, verbose)
    import ray.data

    if not verbose:  # Tune's per-experiment banners, once per greedy round, drown the job's own lines
        import os

        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

    from demoscope.selection import storage

    root = str(out / "gradients")
    fingerprint = world.fingerprint()
    done = set(storage.reusable_sources(root, fingerprint))  # a re-run keeps what the same world computed
    storage.write_metadata(root, world.projection, world.names, settings.clamp, extra={"fingerprint": fingerprint})
    console.rule("1. projected per-sample gradients per source (Ray Data)")
    todo = [s for s in world.sources if s not in done]
    if done:
        console.print(f"reusing the gradients of {len(done)} source(s) from a previous run "
                      f"with the same adapter and data")
    if todo:
        # One block per source, made in the driver: no upstream task then competes with the actors for CPUs.
        timing = ray.data.from_pandas([pd.DataFrame({"source": [s]}) for s in todo]).map_batches(
            GradientActor, fn_constructor_args=(world, root), batch_size=1, batch_format="pandas",
            concurrency=min(len(todo), config.max_concurrent_trials), num_cpus=1, **ACTOR_POOL_OPTIONS,
        ).to_pandas()
        console.print(f"{int(timing.samples.sum())} samples of {len(timing)} sources in {timing.seconds.sum():.1f} s")

    console.rule(f"2. {config.n_subsets} random subsets as Ray Tune trials")
    sources = list(world.sources)
    size = int(config.subset_size) if config.subset_size >= 1 else config.subset_size  # a count, or a fraction
    subsets = [[sources[i] for i in s] for s in sample_subsets(len(sources), config.n_subsets, size, config.seed)]
    cache = EstimateCache(world, root, out, config.max_concurrent_trials, console)
    trials = cache.estimate(subsets, "ensemble", "random ensemble")
    atomic_write(out / "trials.csv",
                 lambda tmp: trials.assign(subset=trials.subset.map(",".join)).to_csv(tmp, index=False))
    scores = ensemble_scores(sources, trials["subset"].tolist(), trials["estimated_loss"].tolist())
    table = pd.DataFrame({"source": sources, "score": [scores[s] for s in sources],
                          "samples": [len(world.sources[s]) for s in sources],
                          "noisy": [s in world.noisy for s in sources]}).sort_values("score").reset_index(drop=True)
    atomic_write(out / "scores.csv", lambda tmp: table.to_csv(tmp, index=False))
    clean, noisy = table[~table.noisy].score, table[table.noisy].score
    separation = float(np.mean([[c < n for n in noisy] for c in clean])) if len(noisy) and len(clean) else float("nan")
    console.print(table.to_string(index=False))
    unscored = list(table.source[table.score.isna()])
    if unscored:
        console.print(f"[yellow]not scored (in every random subset or in none): {', '.join(unscored)}; "
                      "raise --n-subsets[/]")
    if world.noisy:
        console.print(f"clean sources score better than noisy ones in {separation:.0%} of pairs")

    console.rule("3. greedy forward selection (each round's candidates as Ray Tune trials)")
    greedy = greedy_forward_selection(sources, cache.greedy_round)
    selected, best = greedy.selected, greedy.best_value
    history = [{"round": step.round, "added": step.added, "estimated_loss": step.value} for step in greedy.history]
    atomic_write(out / "greedy.csv", lambda tmp: pd.DataFrame(history).to_csv(tmp, index=False))
    console.print(f"greedy selection: {', '.join(selected)} (estimated loss {best:.4f})")
    stored = storage.read_gradients(root, selected)
    error = world.error_check({k: (v.outputs, v.z) for k, v in stored.items()}, selected)
    console.print(f"first-order error check on {error.n_samples} samples of the selection: median relative error "
                  f"{error.median_relative_error:.2e} "
                  f"(outputs taken as unmoved: {error.baseline_median_relative_error:.2e}); "
                  f"the gradient term brings {error.closer_share:.0%} of the samples closer")

    checks = {"selected": selected, **comparison_subsets(sources, selected, config.verify, config.seed + 7)}
    if config.task == "subpop":
        console.rule("4. verification: the Ray Train job fine-tunes each subset, against the estimates")
        verification = pd.DataFrame(_verify_with_train_job(config, world, root, checks, rows, out, console))
    else:
        console.rule("4. verification: real fine-tunes (Ray tasks) against the estimates")
        verification = pd.DataFrame(_verify_toy(config, world, root, checks))
    verification["relative_error"] = ((verification.estimated_loss - verification.real_loss).abs()
                                      / verification.real_loss.abs())
    verification["speedup"] = verification.fine_tune_s / verification.estimate_s.clip(lower=1e-9)
    atomic_write(out / "verification.csv", lambda tmp: verification.to_csv(tmp, index=False))
    from demoscope.reports import plot_bars

    plot_bars(list(table["source"]), table["score"], out / "scores.png",
              "random-ensemble score\n(estimated val loss, lower = better)",
              colors=["tab:red" if n else "tab:green" for n in table["noisy"]])
    check = {"scale": world.settings.error_check_scale, **dataclasses.asdict(error)}
    n_val = sum(len(b["input_ids"]) for batches in world.val_batches.values() for b in batches)
    outcome = SelectionOutcome(table, separation, selected, best, check, verification)
    _report(config, out, outcome, n_val)
    console.print(verification[[c for c in VERIFICATION_COLUMNS if c in verification]].to_string(index=False))
    console.print(f"report: {out / 'report.md'}")
    return outcome


class SubpopRows(NamedTuple):
    """The rows behind a subpop world: training rows, their source labels, and the target validation rows."""

    train: pd.DataFrame
    val: pd.DataFrame
    labels: pd.Series


def _subpop_world(config: SelectConfig, settings, out: Path):
    """The world over a prepared split's waves or topics, validated on the target rows; saves a meta-trained adapter."""
    from demoscope.selection.opinion_sources import build_opinion_world, source_labels, target_rows
    from demoscope.training.opinion_data import read_prepared

    if not config.train_file or not config.val_file:
        raise ConfigError("--task subpop needs --train-file and --val-file (prepared splits)")
    train = read_prepared(config.train_file)
    val = target_rows(read_prepared(config.val_file), config.target_groups, config.target_questions)
    labels = source_labels(train, config.sources, config.topics)
    if labels.nunique() < 2:
        raise ConfigError(f"{config.train_file} has {labels.nunique()} {config.sources}(s): {sorted(labels.unique())}; "
                          "selection needs at least 2 sources")
    world = build_opinion_world(train, val, config.model, config.adapter, settings, labels=labels)
    if not config.adapter:  # the verification runs of the train job start from this adapter
        from demoscope.io import atomic_dir

        with atomic_dir(out / "meta-adapter") as tmp:
            world.model.save_pretrained(tmp)
    return world, SubpopRows(train, val, labels)


def _verify_toy(config: SelectConfig, world, root: str, checks: dict[str, list[str]]) -> list[dict]:
    """Real fine-tunes of the toy (Ray tasks running the library loop) next to the estimates."""
    import ray

    from demoscope.selection.toy import fine_tune_loss

    def timed_fine_tune(w, subset, steps):
        began = time.perf_counter()
        return fine_tune_loss(w, subset, steps), time.perf_counter() - began

    fine_tune = ray.remote(num_cpus=1)(timed_fine_tune)
    world_ref = ray.put(world)
    futures = {name: fine_tune.remote(world_ref, subset, config.fine_tune_steps) for name, subset in checks.items()}
    estimate_loss = estimator(world, root)
    rows = []
    for name, subset in checks.items():
        start = time.perf_counter()
        estimate = estimate_loss(subset)
        estimate_s = time.perf_counter() - start
        real, fine_tune_s = ray.get(futures[name])
        rows.append({"check": name, "subset": ",".join(subset), "estimated_loss": estimate, "real_loss": real,
                     "estimate_s": estimate_s, "fine_tune_s": fine_tune_s})
    return rows


def _verify_with_train_job(config: SelectConfig, world, root: str, checks: dict[str, list[str]], rows: SubpopRows,
                           out: Path, console) -> list[dict]:
    """Fine-tune each subset with ``demoscope train`` (Ray Train), from the meta-trained adapter; real val loss.

    Each run trains on the subset's rows with their modal answer as a one-hot
    target (what the estimates model), starts from the adapter the gradients
    were taken at, and keeps its best epoch by the target rows' loss. Its
    adapter is scored with the estimator's own validation loss (``real_loss``);
    ``real_option_kl`` is the train job's own measure on the same rows (KL
    over the option letters only).
    """
    from demoscope.models import load_causal_lm
    from demoscope.models.names import resolve_model
    from demoscope.pipelines import train as train_job
    from demoscope.pipelines.train_opinion import OpinionTrainConfig
    from demoscope.selection.first_order import validation_loss
    from demoscope.selection.opinion_sources import modal_targets

    adapter = config.adapter or str(out / "meta-adapter")
    val_split = atomic_write(out / "verify" / "val.parquet",
                             lambda tmp: modal_targets(rows.val).to_parquet(tmp, index=False))
    val_batches = [b for group in world.val_batches.values() for b in group]
    estimate_loss = estimator(world, root)
    results = []
    for name, subset in checks.items():
        folder = out / "verify" / name
        members = rows.labels.isin(subset)
        split = atomic_write(
            folder / "train.parquet",
            lambda tmp, members=members: modal_targets(rows.train[members]).to_parquet(tmp, index=False))
        start = time.perf_counter()
        estimate = estimate_loss(subset)
        estimate_s = time.perf_counter() - start
        run_config = OpinionTrainConfig(
            objective="opinion-kl", model=config.model, init_adapter=adapter, train_file=str(split),
            val_file=str(val_split), epochs=config.verify_epochs, lr=config.verify_lr, gamma=1.0,
            batch_size=config.verify_batch_size or world.settings.batch_size, num_workers=config.verify_workers,
            seed=config.seed, out=str(folder),
        )
        console.print(f"{name}: demoscope train on {', '.join(subset)} ({int(members.sum())} rows)")
        start = time.perf_counter()
        trained = train_job.train(run_config)
        fine_tune_s = time.perf_counter() - start
        model, _ = load_causal_lm(resolve_model(config.model), adapters={"verified": str(trained.artifact)})
        best = trained.best
        results.append({"check": name, "subset": ",".join(subset), "estimated_loss": estimate,
                        "real_loss": validation_loss(model, val_batches, world.settings.loss_weighting),
                        "real_option_kl": best["val_kl"], "estimate_s": estimate_s, "fine_tune_s": fine_tune_s})
    return results


def _report(config: SelectConfig, out: Path, outcome, n_val: int) -> None:
    from demoscope.selection.report import write_selection_report

    if config.task == "toy":
        task = (f"the noisy 5-digit-addition toy ({config.clean_sources} clean + {config.noisy_sources} noisy sources "
                f"of {config.samples_per_source} samples)")
        note = f"Clean sources score better than noisy ones in **{outcome.separation:.0%}** of (clean, noisy) pairs."
        fine_tunes = f"{config.fine_tune_steps} steps of the library loop, as Ray tasks"
    else:
        targets = [*config.target_groups, *config.target_questions]
        task = (f"survey {config.sources}s of `{config.train_file}` (model `{config.model}`), validated on "
                f"{n_val} rows of `{config.val_file}`" + (f" (those of {', '.join(targets)})" if targets else ""))
        note = f"Lower scores: {config.sources}s whose inclusion is estimated to help most."
        fine_tunes = (f"`demoscope train` on Ray Train, "
                      f"{config.verify_epochs} epoch{'s' * (config.verify_epochs != 1)} at "
                      f"lr {config.verify_lr:g}, "
                      "from the meta-trained adapter")
    task += f"; projection d={config.project_dim}; {config.n_subsets} random subsets"
    write_selection_report(out, outcome, task, note, fine_tunes)


JOB = Job(name="select", description=DESCRIPTION, config=SelectConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
