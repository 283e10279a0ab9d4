"""The distillation recipe of ``demoscope train``: a student classifier (BoW, Kim CNN or Hugging Face) on Ray Train.

Students learn from hard labels (``baseline``), from
``alpha * KL(teacher || student) + (1 - alpha) * CE`` on the teacher's soft
labels (``distill``), or from ``T^2 * KL`` at temperature T (``tempered``),
with DDP over Ray Train workers; the exported student is the one with the
lowest validation loss. Hinton et al. 2015, "Distilling the Knowledge in a
Neural Network" (arXiv:1503.02531); the students follow Kim 2014
(arXiv:1408.5882).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field

from demoscope.errors import ConfigError
from demoscope.pipelines.train_common import Recipe, TrainSettings, unwrap

DESCRIPTION = """\
objective distill: a student classifier (--student bow|cnn|hf) on text,label[,label_0,label_1]: hard labels
        (--distill-mode baseline), alpha*KL(teacher||student)+(1-alpha)*CE, or T^2*KL (tempered).
reads   text, label (0/1), and the teacher's label_0, label_1 for distill/tempered (.csv/.jsonl/.parquet; `demoscope
        distill` writes them)
writes  OUT/student (the student of the lowest validation loss)
example demoscope train --objective distill --student cnn --train-file runs/distill/soft_labels.parquet \\
            --out runs/cnn-distilled --alpha 0.9
"""


class DistillTrainConfig(TrainSettings):
    """``demoscope train --objective distill``: a student classifier trained on a teacher's labels."""

    objective: Literal["distill"] = Field("distill", description="train a distillation student")
    student: Literal["bow", "cnn", "hf"] = Field("bow", description="bag-of-words, Kim CNN, or a Hugging Face "
                                                                    "classifier (--model)")
    distill_mode: Literal["baseline", "distill", "tempered"] = Field(
        "distill", description="hard labels, alpha*KL+(1-alpha)*CE on label_0/label_1, or T^2*KL")
    alpha: float = Field(0.9, ge=0, le=1, description="weight of the teacher term")
    temperature: float = Field(2.0, gt=0, description="tempered: softmax temperature of the student")
    vocab_size: int = Field(10000, ge=2, description="bow/cnn: vocabulary ids, UNK included")


def epoch_summary(m: dict[str, float]) -> str:
    """A student's epoch as one line: training (and validation) loss and accuracy."""
    val = f"  val loss {m['val_loss']:.4f} accuracy {m['val_accuracy']:.3f}" if "val_accuracy" in m else ""
    return f"train loss {m['train_loss']:.4f} accuracy {m['train_accuracy']:.3f}{val}"


def check(config: DistillTrainConfig) -> DistillTrainConfig:
    """Refuse what cannot run before Ray starts: missing files, rows without the columns the mode needs."""
    from demoscope.distill.data import read_labelled

    for path, soft in ((config.train_file, config.distill_mode != "baseline"), (config.val_file, False)):
        if path and not Path(path).exists():
            raise ConfigError(f"training file {path} does not exist")
        if path:
            read_labelled(path, soft=soft)
    return config


def distill_loop(cfg: dict) -> None:
    """Per-worker training of a distillation student (BoW, Kim CNN or HF classifier), DDP over Ray Train."""
    import numpy as np
    import ray.train
    import torch
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler

    from demoscope.distill import make_student, positive_probability, save_student
    from demoscope.distill.data import read_labelled
    from demoscope.distill.training import (
        epoch_metrics,
        make_loader,
        make_optimizer,
        train_epoch,
    )
    from demoscope.models.names import resolve_model
    from demoscope.pipelines.train_progress import worker_settings
    from demoscope.training.progress import ProgressClock, epoch_record
    from demoscope.training.resume import load_trainer_state

    settings, send = worker_settings(cfg)
    config = DistillTrainConfig.model_validate(settings)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    soft = config.distill_mode != "baseline"
    train = read_labelled(config.train_file, soft=soft)
    val = read_labelled(config.val_file) if config.val_file else None
    torch.manual_seed(config.seed)
    # Every worker builds the same vocabulary from the same texts, so no broadcast is needed.
    student = make_student(config.student, texts=train["text"].tolist(), vocab_size=config.vocab_size,
                           model_path=resolve_model(config.model) if config.student == "hf" else None, seed=config.seed)
    student.module = ray.train.torch.prepare_model(student.module)
    sampler = DistributedSampler(range(len(train)), num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    teacher = train[["label_0", "label_1"]].to_numpy(dtype="float32") if soft else None
    loader = make_loader(student, train["text"].tolist(), train["label"].tolist(), teacher, config.batch_size,
                         sampler=sampler)
    optimizer = make_optimizer(student.module, config.lr, config.weight_decay)
    start, resumed_from = 0, -1
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            state = load_trainer_state(Path(folder) / "trainer_state.pt")  # data only: a planted pickle runs nothing
        unwrap(student.module).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optim"])
        start, resumed_from = state["epoch"] + 1, state["epoch"]
    clock = ProgressClock(config.epochs, done_before=start)  # students train fast: progress per epoch
    for epoch in range(start, config.epochs):
        sampler.set_epoch(epoch)
        sums = train_epoch(student.module, loader, optimizer, config.distill_mode, config.alpha, config.temperature)
        if world > 1:
            values = torch.tensor([sums["loss_sum"], sums["correct"], sums["n"]], dtype=torch.float64)
            dist.all_reduce(values)
            sums = dict(zip(("loss_sum", "correct", "n"), values.tolist()))
        summary = epoch_metrics(sums, epoch)
        metrics = {"epoch": epoch, "train_loss": summary["loss"], "train_accuracy": summary["accuracy"],
                   "resumed_from_epoch": resumed_from}
        module = unwrap(student.module)
        if val is not None:  # every rank scores the (small) validation set the same way
            original, student.module = student.module, module
            p = np.clip(positive_probability(student, val["text"].tolist()), 1e-7, 1 - 1e-7)
            student.module = original
            labels = val["label"].to_numpy()
            metrics["val_accuracy"] = float(((p > 0.5) == labels).mean())
            metrics["val_loss"] = float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
        else:
            metrics["val_loss"] = metrics["train_loss"]
        if rank == 0:
            with tempfile.TemporaryDirectory() as folder:
                original, student.module = student.module, module
                save_student(student, Path(folder) / "student")
                student.module = original
                torch.save({"model": module.state_dict(), "optim": optimizer.state_dict(), "epoch": epoch},
                           Path(folder) / "trainer_state.pt")
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        else:
            ray.train.report(metrics)
        if send:  # after the report, so a printed epoch is one that Ray Train has registered
            send(epoch_record(clock, config.epochs, metrics, epoch + 1,
                              epoch_summary(metrics)))


RECIPE = Recipe(config=DistillTrainConfig, loop=distill_loop, artifact="student", checkpoint_folder="student",
                summary=epoch_summary, score=lambda config: "val_loss")
