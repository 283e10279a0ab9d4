"""Training a student in plain PyTorch: baseline, distilled or tempered (``reference`` D.2).

Nothing here knows about Ray. In-process, :func:`train_student` does it all.
Inside a Ray Train worker the Ray layer builds the loader with
:func:`make_loader` (passing a ``DistributedSampler``), wraps
``student.module`` (DDP), and calls :func:`train_epoch` per epoch; its sums
(``loss_sum``, ``correct``, ``n``) add up across ranks.

The seed's recipes: BoW/CNN Adam lr 1e-3, batch 32, 5 epochs, ``distill``
with alpha 0.9; DistilBERT lr 2e-5, batch 16, weight decay 0.01 (baseline,
10 epochs) or ``tempered`` with T = 2 (7 epochs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from demoscope.distill.losses import student_loss
from demoscope.distill.students import Student
from demoscope.errors import ConfigError

Mode = Literal["baseline", "distill", "tempered"]
MODES = ("baseline", "distill", "tempered")


class SoftLabelDataset(Dataset):
    """Rows ``(text, label, teacher p(0), teacher p(1))``; teacher columns are NaN when there is no teacher."""

    def __init__(self, texts: Sequence[str], labels: Sequence[int], teacher_probs: Any = None):
        if len(texts) != len(labels):
            raise ConfigError(f"got {len(texts)} texts but {len(labels)} labels")
        self.texts = list(texts)
        self.labels = torch.tensor(np.array(labels, dtype=np.int64))
        if teacher_probs is None:
            self.teacher = torch.full((len(self.texts), 2), float("nan"))
        else:
            probs = np.asarray(teacher_probs, dtype=np.float32)
            if probs.shape != (len(self.texts), 2):
                raise ConfigError(f"teacher_probs must have shape ({len(self.texts)}, 2), got {probs.shape}")
            self.teacher = torch.tensor(probs)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> int:
        # Indices only: the collate function encodes a whole batch at once (per-batch padding, as the seed).
        return index


class Collate:
    """Indices -> ``{"inputs": student.encode(texts), "labels": [B], "teacher_probs": [B, 2]}``."""

    def __init__(self, student: Student, dataset: SoftLabelDataset):
        self.encoder, self.dataset = student.encoder, dataset

    def __call__(self, indices: list[int]) -> dict[str, Any]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {
            "inputs": self.encoder([self.dataset.texts[i] for i in indices]),
            "labels": self.dataset.labels[idx],
            "teacher_probs": self.dataset.teacher[idx],
        }


def make_loader(
    student: Student,
    texts: Sequence[str],
    labels: Sequence[int],
    teacher_probs: Any = None,
    batch_size: int = 32,
    seed: int = 0,
    shuffle: bool = True,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A ``DataLoader`` of encoded batches; shuffling is seeded (a fresh order each epoch, the same each run).

    With a ``sampler`` (e.g. a ``DistributedSampler``) the sampler orders the
    rows and ``shuffle``/``seed`` are not used here.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    dataset = SoftLabelDataset(texts, labels, teacher_probs)
    generator = None
    if sampler is None and shuffle:
        generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=sampler is None and shuffle, sampler=sampler, generator=generator,
        collate_fn=Collate(student, dataset),
    )


def make_optimizer(module: torch.nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (the BoW/CNN recipe), or AdamW when ``weight_decay`` > 0 (the HF Trainer's optimiser)."""
    if weight_decay > 0:
        return torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(module.parameters(), lr=lr)


def train_epoch(
    module: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    mode: Mode = "baseline",
    alpha: float = 0.9,
    temperature: float = 2.0,
) -> dict[str, float]:
    """One pass over ``loader``; returns sums ``loss_sum`` (per-example loss summed), ``correct``, ``n``.

    Accuracy is counted on the training batches as they are trained (in
    train mode, so with dropout), which costs no extra pass.
    """
    device = next(module.parameters()).device
    module.train()
    loss_sum, correct, n = 0.0, 0, 0
    for batch in loader:
        inputs = {k: v.to(device) for k, v in batch["inputs"].items()}
        labels = batch["labels"].to(device)
        teacher = batch["teacher_probs"].to(device) if mode != "baseline" else None
        logits = module(**inputs)
        loss = student_loss(mode, logits, labels, teacher, alpha=alpha, temperature=temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        size = len(labels)
        loss_sum += float(loss.detach()) * size
        correct += int((logits.detach().argmax(dim=-1) == labels).sum())
        n += size
    return {"loss_sum": loss_sum, "correct": float(correct), "n": float(n)}


def epoch_metrics(sums: dict[str, float], epoch: int) -> dict[str, float]:
    """Sums of :func:`train_epoch` (possibly added over ranks) -> ``epoch, loss, accuracy, n``."""
    n = max(sums["n"], 1.0)
    return {"epoch": epoch, "loss": sums["loss_sum"] / n, "accuracy": sums["correct"] / n, "n": sums["n"]}



def check_mode(mode: str, teacher_probs: Any, alpha: float, temperature: float) -> None:
    """Raise :class:`ConfigError` for an unknown mode, a missing teacher, or alpha/temperature out of range."""
    if mode not in MODES:
        raise ConfigError(f"unknown training mode {mode!r}; use one of {MODES}")
    if mode != "baseline" and teacher_probs is None:
        raise ConfigError(f"mode {mode!r} trains on teacher probabilities; pass teacher_probs")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")


def train_student(
    student: Student,
    texts: Sequence[str],
    labels: Sequence[int],
    teacher_probs: Any = None,
    mode: Mode = "baseline",
    alpha: float = 0.9,
    temperature: float = 2.0,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    weight_decay: float = 0.0,
    sampler: Sampler | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``student`` in place; returns one ``{epoch, loss, accuracy, n}`` dict per epoch.

    ``mode``: ``"baseline"`` (cross-entropy on ``labels``), ``"distill"``
    (alpha * KL(teacher || student) + (1 - alpha) * CE) or ``"tempered"``
    (T^2 * KL(teacher || student at T)). ``teacher_probs`` is ``[n, 2]``
    (the ``label_0, label_1`` columns). Shuffling, initial dropout masks and
    everything random here derive from ``seed``, without touching the
    caller's global random state. ``on_epoch`` gets each epoch's metrics
    (e.g. to report to Ray Train). A ``sampler`` with ``set_epoch`` (a
    ``DistributedSampler``) is told the epoch before each pass.
    """
    check_mode(mode, teacher_probs, alpha, temperature)
    if epochs < 0:
        raise ConfigError(f"epochs must be >= 0, got {epochs}")
    loader = make_loader(student, texts, labels, teacher_probs if mode != "baseline" else None, batch_size, seed,
                         sampler=sampler)
    optimizer = make_optimizer(student.module, lr, weight_decay)
    history = []
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)  # dropout masks
        for epoch in range(1, epochs + 1):
            if hasattr(loader.sampler, "set_epoch"):
                loader.sampler.set_epoch(epoch)
            metrics = epoch_metrics(train_epoch(student.module, loader, optimizer, mode, alpha, temperature), epoch)
            history.append(metrics)
            if on_epoch is not None:
                on_epoch(metrics)
    return history
