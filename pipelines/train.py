"""``demoscope train``: one Ray Train (``TorchTrainer``) run of one recipe, chosen once by ``--objective``.

The recipes, each with its config beside it:

- :mod:`~demoscope.pipelines.train_opinion`: ``opinion-kl`` / ``opinion-wd`` (SubPOP);
- :mod:`~demoscope.pipelines.train_preference`: ``dpo`` / ``sft`` through TRL (PoliTune);
- :mod:`~demoscope.pipelines.train_distill`: ``distill`` students.

This module checks a config before Ray starts, resumes or refuses an earlier
run in the same ``out`` (:mod:`~demoscope.pipelines.train_runs`), streams
progress to the terminal, and exports the best checkpoint's artifact and the
metrics (:mod:`~demoscope.pipelines.train_common`). A failed worker group
restarts from the last checkpoint (``FailureConfig``).

    demoscope train --objective opinion-kl --model tiny:llama \\
        --train-file runs/prepare/opnqa_QA_train.parquet --val-file runs/prepare/opnqa_QA_val.parquet
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demoscope.config import load_config, save_config
from demoscope.config.loading import read_yaml
from demoscope.errors import ConfigError
from demoscope.pipelines import train_distill, train_opinion, train_preference
from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.runtime import check_resources, init_ray
from demoscope.pipelines.train_common import Recipe, export_best
from demoscope.pipelines.train_common import build_trainer as _build_trainer
from demoscope.pipelines.train_distill import DistillTrainConfig
from demoscope.pipelines.train_opinion import OpinionTrainConfig
from demoscope.pipelines.train_preference import PreferenceTrainConfig
from demoscope.pipelines.train_progress import ProgressPump
from demoscope.pipelines.train_runs import (
    check_previous_run,
    clear_previous_run,
    fit_interruptibly,
    interrupted_message,
    tidy_storage,
)

# Any recipe's config; ``objective`` says which.
TrainConfig = OpinionTrainConfig | PreferenceTrainConfig | DistillTrainConfig

# objective -> the module of its recipe (RECIPE, check, DESCRIPTION).
RECIPES = {"opinion-kl": train_opinion, "opinion-wd": train_opinion, "dpo": train_preference,
           "sft": train_preference, "distill": train_distill}
DEFAULT_OBJECTIVE = "opinion-kl"

SUMMARY = "training on Ray Train: LoRA opinion-kl/wd, dpo/sft (TRL), distill students; DDP or FSDP, resumable"
DESCRIPTION = """\
Train on Ray Train (DDP, or FSDP), one objective per run (--objective):
  opinion-kl / opinion-wd  LoRA on a causal LM to predict survey answer distributions (SubPOP)
  dpo / sft                LoRA / QLoRA through TRL's DPOTrainer / SFTTrainer (PoliTune)
  distill                  a student classifier on a teacher's labels
Every run writes OUT/metrics.json (per epoch), OUT/tensorboard/ (tensorboard --logdir OUT/tensorboard),
OUT/ray/ (checkpoints), OUT/config.yaml and OUT/progress.jsonl. Re-running with the same OUT and settings
(epochs may grow under a schedule that does not depend on them) resumes from the last checkpoint; other
settings are refused, --restart starts over. Ctrl-C keeps the registered checkpoints.

The settings below are those of --objective {objective}; `demoscope train --objective X --help` lists another's.

{recipe}"""


def recipe_for(objective: str) -> Recipe:
    """The recipe that trains ``objective``."""
    if objective not in RECIPES:
        raise ConfigError(f"unknown objective {objective!r}; one of {', '.join(RECIPES)}")
    return RECIPES[objective].RECIPE


def config_class(objective: str | None) -> type[TrainConfig]:
    """The config model of ``objective`` (``None``: the default, opinion-kl)."""
    return recipe_for(objective or DEFAULT_OBJECTIVE).config


def train_config(settings: dict[str, Any]) -> TrainConfig:
    """Validate a settings mapping (a YAML preset, a sweep trial) as its objective's config; errors name the keys."""
    return load_config(config_class(settings.get("objective")), flags=settings)


def load_train_config(path: str | Path, **updates: Any) -> TrainConfig:
    """A training config from a YAML file (a preset), with ``updates`` on top."""
    return train_config({**read_yaml(path), **updates})


def resolve(config: TrainConfig) -> TrainConfig:
    """Check a config before anything starts (the recipe's own checks), and pin its paths
    (workers may run elsewhere).
    """
    if not config.train_file:
        raise ConfigError("no training data: give --train-file (for opinions, a split written by `demoscope prepare`)")
    config = RECIPES[config.objective].check(config)
    local = {name: str(Path(path).resolve()) for name in ("train_file", "val_file")
             if (path := getattr(config, name)) and Path(path).exists()}
    return config.model_copy(update={"out": str(Path(config.out).resolve()), **local})


def build_trainer(config: TrainConfig, callbacks: list | None = None, progress: ProgressPump | None = None):
    """The ``TorchTrainer`` of a resolved config's recipe.

    ``callbacks`` are Ray Train callbacks (e.g. Tune's reporter); with
    ``progress`` the workers send their progress records to its queue.
    """
    from demoscope.models.names import resolve_model

    resolve_model(config.model)  # build the tiny model once here, not in every worker at once
    settings = config.model_dump(mode="json")
    return _build_trainer(recipe_for(config.objective), config,
                          progress.loop_config(settings) if progress else settings, callbacks)


def export_result(result, config: TrainConfig) -> tuple[dict, list[dict]]:
    """Copy the best checkpoint's artifact to OUT and write OUT/metrics.json; returns (best, history)."""
    return export_best(recipe_for(config.objective), config, result)


@dataclass(frozen=True)
class TrainResult:
    """What a training run leaves: its folder, the exported best artifact, and the metrics by epoch."""

    out: Path
    artifact: Path  # OUT/adapter (opinion, dpo, sft) or OUT/student (distill)
    best: dict  # the best epoch's metrics (as OUT/metrics.json "best")
    history: list[dict]


def run(config: TrainConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope train`` command: :func:`train`, exit code 0 (errors raise)."""
    train(config, address, verbose)
    return 0


def train(config: TrainConfig, address: str | None = None, verbose: bool = False) -> TrainResult:
    """Launch the TorchTrainer, then export the best adapter and the metrics; the Python API of ``demoscope train``.

    Into an ``out`` that holds a run, the same settings resume it and others
    are refused (:func:`check_previous_run`); ``restart`` removes that run
    first. Ctrl-C stops the workers and raises ``KeyboardInterrupt`` whose
    message says what ``out`` keeps and how to resume. Composite jobs, Tune
    trials and notebooks call this and read the result, not the files.
    """
    config = resolve(config)
    out = Path(config.out)
    resuming = False if config.restart else check_previous_run(config, out)
    init_ray(address, verbose)
    check_resources("train", config.num_workers, config.use_gpu)
    from rich.console import Console

    console = Console(soft_wrap=True)  # soft_wrap: long lines (paths) wrap instead of being cut at the width
    if config.restart:  # only now: a run refused above (settings, resources) leaves the earlier one in place
        removed = clear_previous_run(config)
        if removed:
            console.print(f"--restart: removed the earlier run in {out} ({', '.join(removed)})", markup=False)
    if resuming:
        console.print(f"{out} holds an earlier run with the same settings: resuming it from its last checkpoint",
                      markup=False)
    strategy = getattr(config, "strategy", "ddp")  # students always train data-parallel
    where = f"{config.num_workers} {'GPU' if config.use_gpu else 'CPU'} workers, {strategy.upper()}"
    console.print(f"training {config.model} ({config.objective}) on Ray Train: {where}; progress below and in "
                  f"{out / 'progress.jsonl'}; curves: tensorboard --logdir {out / 'tensorboard'}", markup=False)
    # Written after the checks, so it never names settings other than those of the checkpoints beside it, and
    # before fit, so that an interrupted run keeps it for the next run's comparison. restart is an action on
    # this folder, not a setting: the same command from this file must resume, not wipe.
    save_config(config.model_copy(update={"restart": False}), out / "config.yaml")
    try:
        with ProgressPump(out / "progress.jsonl") as progress:
            result = fit_interruptibly(build_trainer(config, progress=progress))
    except KeyboardInterrupt:
        raise KeyboardInterrupt(interrupted_message(config, tidy_storage(config, resuming))) from None
    except BaseException:
        tidy_storage(config, resuming)
        raise
    tidy_storage(config, resuming)
    best_metrics, history = export_result(result, config)
    recipe = recipe_for(config.objective)
    if not progress.printer.shown:  # nothing came through live (e.g. every epoch was done before a re-run)
        for metrics in history:
            console.print(f"epoch {metrics['epoch']:g}: {recipe.summary(metrics)}", markup=False)
    artifact = out / recipe.artifact
    console.print(f"best epoch {best_metrics['epoch']}; {artifact.name} -> {artifact}")
    return TrainResult(out, artifact, best_metrics, history)


def _job(objective: str) -> Job:
    """``demoscope train`` with the flags and help of ``objective``'s recipe."""
    recipe = RECIPES[objective]
    return Job(name="train", description=DESCRIPTION.format(objective=objective, recipe=recipe.DESCRIPTION),
               config=recipe.RECIPE.config, run=run, variant=job_for)


def job_for(argv: list[str]) -> Job:
    """The job as ``argv`` asks for it: ``--objective X``, ``objective=X``, or a ``--config`` file's objective."""
    objective = None
    for i, arg in enumerate(argv):
        if arg == "--objective" and i + 1 < len(argv):
            objective = argv[i + 1]
        elif arg.startswith(("--objective=", "objective=")):
            objective = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv) and objective is None and Path(argv[i + 1]).is_file():
            objective = read_yaml(argv[i + 1]).get("objective")
        elif arg.startswith("--config=") and objective is None and Path(arg.split("=", 1)[1]).is_file():
            objective = read_yaml(arg.split("=", 1)[1]).get("objective")
    objective = objective or DEFAULT_OBJECTIVE
    recipe_for(objective)  # an unknown objective is refused here, by name
    return _job(objective)


JOB = _job(DEFAULT_OBJECTIVE)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
