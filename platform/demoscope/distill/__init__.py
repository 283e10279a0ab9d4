"""Bias transfer in distillation: teacher soft labels, BoW/CNN/HF students, distillation losses, training.

Follows ``reference`` D.1, D.2 and D.5 (seed 004). Bias statistics on the
EEC live in :mod:`demoscope.bias`; nothing here imports Ray.
"""

from demoscope.distill.losses import distillation_loss, hard_label_loss, student_loss, tempered_distillation_loss
from demoscope.distill.opinion import teacher_option_dists, teacher_option_targets
from demoscope.distill.students import (
    BagOfWords,
    HFClassifier,
    KimCNN,
    Student,
    load_student,
    make_student,
    positive_probability,
    save_student,
)
from demoscope.distill.teacher import (
    LABEL_WORDS,
    TeacherLabeler,
    few_shot_prompt,
    label_token_ids,
    pick_examples,
    soft_label_frame,
)
from demoscope.distill.tiny_classifier import build_tiny_classifier
from demoscope.distill.training import make_loader, train_epoch, train_student
from demoscope.distill.vocabulary import WordVocabulary, tokenize

__all__ = [
    "LABEL_WORDS",
    "BagOfWords",
    "HFClassifier",
    "KimCNN",
    "Student",
    "TeacherLabeler",
    "WordVocabulary",
    "build_tiny_classifier",
    "distillation_loss",
    "few_shot_prompt",
    "hard_label_loss",
    "label_token_ids",
    "load_student",
    "make_loader",
    "make_student",
    "pick_examples",
    "positive_probability",
    "save_student",
    "soft_label_frame",
    "student_loss",
    "teacher_option_dists",
    "teacher_option_targets",
    "tempered_distillation_loss",
    "tokenize",
    "train_epoch",
    "train_student",
]
