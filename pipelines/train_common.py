"""What the three training recipes share: the settings every run has, and the Ray Train scaffolding as functions.

Each recipe (:mod:`~demoscope.pipelines.train_opinion`,
:mod:`~demoscope.pipelines.train_preference`,
:mod:`~demoscope.pipelines.train_distill`) declares its config (these
fields and its own), its worker loop and a :class:`Recipe` saying how its best
checkpoint is chosen and exported; :mod:`demoscope.pipelines.train` runs any of
them with :func:`build_trainer` and :func:`export_best`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from demoscope.io import atomic_dir, atomic_write_text


class TrainSettings(BaseModel):
    """The settings of every training run (data, output, schedule length, Ray Train scaling); recipes add theirs."""

    model_config = ConfigDict(extra="forbid")
    objective: str = Field(description="what to train; each recipe narrows it to its own objectives")
    model: str = Field("tiny:llama", description="Hugging Face id, local path, or tiny:llama / tiny:gpt2 "
                       "(offline factory)")
    train_file: str = Field("", description="training data (what it holds depends on the objective; see above)")
    val_file: str | None = Field(None, description="validation data in the training data's format (default: none)")
    out: str = Field("runs/train", description="output folder (artifact, metrics, TensorBoard logs, checkpoints)")
    restart: bool = Field(False, description="start over in OUT: remove its earlier run first")
    epochs: int = Field(3, ge=1, description="passes over the training set")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    batch_size: int = Field(32, ge=1, description="examples per worker per micro-batch")
    seed: int = Field(42, description="random seed")
    num_workers: int = Field(2, ge=1, description="Ray Train workers")
    use_gpu: bool = Field(False, description="one GPU per worker (NCCL, bf16)")
    max_failures: int = Field(2, ge=0, description="worker-group restarts from the last checkpoint after a failure")
    storage_path: str | None = Field(None, description="where Ray Train keeps checkpoints "
                                                       "(default OUT/ray; a cloud URI on clusters)")


@dataclass(frozen=True)
class Recipe:
    """How ``demoscope train`` runs one family of objectives.

    ``loop`` is the Ray Train worker function; ``score`` names the metric
    whose lowest value marks the best checkpoint (``None``: the last one);
    ``checkpoint_folder`` is the folder inside a checkpoint that becomes
    ``OUT/<artifact>`` (only the ``keep`` files of it, when given).
    """

    config: type[TrainSettings]
    loop: Callable[[dict], None]
    artifact: str
    checkpoint_folder: str
    summary: Callable[[dict], str]
    score: Callable[[Any], str | None]
    keep: tuple[str, ...] | None = None


def build_trainer(recipe: Recipe, config: TrainSettings, loop_config: dict, callbacks: list | None = None):
    """The ``TorchTrainer`` for a resolved config: one Ray Train run named ``train`` under OUT/ray (or storage_path)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    score = recipe.score(config)
    return TorchTrainer(
        recipe.loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu),
        run_config=RunConfig(
            name="train",
            storage_path=config.storage_path or str(Path(config.out) / "ray"),
            failure_config=FailureConfig(max_failures=config.max_failures),
            # Ray keeps checkpoints ranked by the recipe's score; without one, in the order they came.
            checkpoint_config=CheckpointConfig(checkpoint_score_attribute=score, checkpoint_score_order="min"),
            callbacks=callbacks,
        ),
    )


def export_best(recipe: Recipe, config: TrainSettings, result) -> tuple[dict, list[dict]]:
    """Copy the best checkpoint's artifact to ``OUT/<artifact>`` and write OUT/metrics.json; returns (best, history)."""
    out = Path(config.out)
    # After a restart an epoch can be reported twice; the later report (in registration order) wins.
    by_epoch = {metrics["epoch"]: metrics for _, metrics in result.best_checkpoints}
    history = [by_epoch[epoch] for epoch in sorted(by_epoch)]
    score = recipe.score(config)
    best_checkpoint, best_metrics = (min(result.best_checkpoints, key=lambda cm: cm[1][score]) if score
                                     else result.best_checkpoints[-1])
    with best_checkpoint.as_directory() as folder, atomic_dir(out / recipe.artifact) as staging:
        copy_artifact(recipe, Path(folder), staging)
    atomic_write_text(out / "metrics.json", json.dumps({"best": best_metrics, "epochs": history}, indent=2))
    return best_metrics, history


def copy_artifact(recipe: Recipe, checkpoint: Path, target: Path) -> None:
    """Copy the recipe's artifact out of a checkpoint folder into ``target`` (all of it, or its ``keep`` files)."""
    source = checkpoint / recipe.checkpoint_folder
    target.mkdir(parents=True, exist_ok=True)
    if recipe.keep:
        for name in recipe.keep:
            shutil.copy2(source / name, target / name)
    else:
        shutil.copytree(source, target, dirs_exist_ok=True)


def unwrap(model):
    """The module inside a DDP wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model
