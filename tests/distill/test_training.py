"""Student training (reference D.2) on the planted-bias reviews: baseline, distilled, tempered."""

import numpy as np
import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from demoscope.distill import make_loader, make_student, positive_probability, train_student
from demoscope.errors import ConfigError


def _accuracy(student, frame) -> float:
    return float(((positive_probability(student, frame["text"].tolist()) > 0.5) == frame["label"]).mean())


def test_bow_baseline_learns_the_sentiment(reviews):
    train, held_out = reviews
    student = make_student("bow", texts=train["text"], seed=0)
    seen = []
    history = train_student(student, train["text"].tolist(), train["label"].tolist(), epochs=5, lr=1e-2,
                            on_epoch=seen.append)
    assert seen == history and [m["epoch"] for m in history] == [1, 2, 3, 4, 5]
    assert history[-1]["loss"] < history[0]["loss"] and history[-1]["n"] == len(train)
    assert history[-1]["accuracy"] > 0.75
    # Chance is 0.5; cue words decide 60% of rows, so about 0.88 is the ceiling.
    assert _accuracy(student, held_out) > 0.75


def test_distilled_student_learns_from_smoothed_teacher(reviews):
    train, held_out = reviews
    y = train["label"].to_numpy()
    teacher = np.stack([0.85 - 0.7 * y, 0.15 + 0.7 * y], axis=1)  # labels smoothed to 0.15 / 0.85
    student = make_student("cnn", texts=train["text"], seed=0, filters=16)
    history = train_student(student, train["text"].tolist(), y, teacher, mode="distill", alpha=0.9,
                            epochs=4, lr=3e-3)
    assert history[-1]["loss"] < history[0]["loss"]
    assert _accuracy(student, held_out) > 0.75
    # Pure soft labels (alpha = 1) of 0.15/0.85 keep the student off 0/1, where hard labels (alpha = 0) push it.
    confidence, extreme = {}, {}
    for alpha in (0.0, 1.0):
        bow = make_student("bow", texts=train["text"], seed=0)
        train_student(bow, train["text"].tolist(), y, teacher, mode="distill", alpha=alpha, epochs=30, lr=3e-2)
        p = positive_probability(bow, train["text"].tolist(), batch_size=32)
        confidence[alpha], extreme[alpha] = np.maximum(p, 1 - p).mean(), ((p < 0.05) | (p > 0.95)).mean()
        assert _accuracy(bow, held_out) > 0.75
    assert confidence[1.0] < 0.85 < confidence[0.0]
    assert extreme[1.0] < 0.02 and extreme[0.0] > 0.3


def test_training_is_seeded(reviews):
    train, _ = reviews
    texts, labels = train["text"].tolist()[:96], train["label"].tolist()[:96]

    def run(seed):
        student = make_student("cnn", texts=texts, seed=0, filters=4)
        return train_student(student, texts, labels, epochs=2, seed=seed), student

    (h1, s1), (h2, s2), (h3, _) = run(5), run(5), run(6)
    assert h1 == h2 and h1 != h3
    assert torch.equal(s1.module.fc.weight, s2.module.fc.weight)


def test_tiny_hf_classifier_trains_with_the_tempered_loss(reviews, classifier_dir):
    train, _ = reviews
    texts, y = train["text"].tolist()[:64], train["label"].to_numpy()[:64]
    teacher = np.stack([1 - (0.1 + 0.8 * y), 0.1 + 0.8 * y], axis=1)
    for mode in ("baseline", "tempered"):
        student = make_student("hf", model_path=classifier_dir)
        history = train_student(student, texts, y, teacher, mode=mode, temperature=2.0, epochs=4, lr=2e-3,
                                batch_size=16, weight_decay=0.01)
        losses = [m["loss"] for m in history]
        assert losses[-1] < losses[0], (mode, losses)


def test_loader_batches_and_distributed_sampler(reviews):
    train, _ = reviews
    texts, labels = train["text"].tolist()[:50], train["label"].tolist()[:50]
    student = make_student("bow", texts=texts)
    teacher = np.full((50, 2), 0.5)
    batch = next(iter(make_loader(student, texts, labels, teacher, batch_size=8, shuffle=False)))
    assert batch["inputs"]["input_ids"].shape[0] == 8 and batch["labels"].tolist() == labels[:8]
    assert batch["teacher_probs"].shape == (8, 2)
    first = [b["labels"].tolist() for b in make_loader(student, texts, labels, seed=1)]
    assert first == [b["labels"].tolist() for b in make_loader(student, texts, labels, seed=1)]
    # A Ray worker's sampler: rank 0 of 2 trains on half the rows.
    sampler = DistributedSampler(range(50), num_replicas=2, rank=0, shuffle=True, seed=0)
    history = train_student(student, texts, labels, epochs=2, sampler=sampler)
    assert [m["n"] for m in history] == [25, 25] and sampler.epoch == 2


def test_training_arguments_are_checked(reviews):
    train, _ = reviews
    texts, labels = train["text"].tolist()[:10], train["label"].tolist()[:10]
    student = make_student("bow", texts=texts)
    with pytest.raises(ConfigError, match="teacher_probs"):
        train_student(student, texts, labels, mode="distill")
    with pytest.raises(ConfigError, match="unknown training mode"):
        train_student(student, texts, labels, np.full((10, 2), 0.5), mode="kd")
    with pytest.raises(ConfigError, match="shape"):
        train_student(student, texts, labels, np.full((9, 2), 0.5), mode="tempered")
