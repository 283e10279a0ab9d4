"""Ray Train worker loop for distillation students (the ``distill`` objective of ``demoscope train``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from demoscope.config.train import TrainConfig


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def distill_loop(cfg: dict) -> None:
    """Per-worker training of a distillation student (BoW, Kim CNN or HF classifier), DDP over Ray Train."""
    import numpy as np
    import ray.train
    import torch
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler

    from demoscope.distill import make_student, positive_probability, save_student
    from demoscope.distill.data import read_labelled
    from demoscope.distill.training import epoch_metrics, make_loader, make_optimizer, train_epoch
    from demoscope.models.names import resolve_model
    from demoscope.pipelines.train_progress import worker_settings
    from demoscope.training.progress import ProgressClock, epoch_record
    from demoscope.training.resume import load_trainer_state

    settings, send = worker_settings(cfg)
    config = TrainConfig.model_validate(settings)
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
    loader = make_loader(student, train["text"].tolist(), train["label"].tolist(), teacher, config.batch_size, sampler=sampler)
    optimizer = make_optimizer(student.module, config.lr, config.weight_decay)
    start, resumed_from = 0, -1
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            state = load_trainer_state(Path(folder) / "trainer_state.pt")  # data only: a planted pickle runs nothing
        _unwrap(student.module).load_state_dict(state["model"])
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
        module = _unwrap(student.module)
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
            send(epoch_record(clock, config.epochs, metrics, epoch + 1))
