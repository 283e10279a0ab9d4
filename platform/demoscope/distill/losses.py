"""Student losses for bias-transfer distillation (``reference`` D.2).

* :func:`hard_label_loss`: cross-entropy on the gold labels (every baseline).
* :func:`distillation_loss`: the BoW/CNN objective,
  ``alpha * KL(p_T || softmax(z)) + (1 - alpha) * CE(z, y)``, teacher
  probabilities clamped at 1e-8 and renormalised, no temperature.
* :func:`tempered_distillation_loss`: the DistilBERT objective,
  ``T^2 * KL(p_T || softmax(z / T))``; the teacher is *not* tempered and
  there is no hard-label term.

``F.kl_div(log q, p, reduction="batchmean")`` is ``KL(p || q)`` averaged
over the batch, i.e. KL(teacher || student), whatever the seed's docstring
says.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from demoscope.errors import ConfigError

# The reference clamps teacher probabilities here before renormalising.
_CLAMP = 1e-8


def hard_label_loss(student_logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of ``[B, 2]`` logits against ``[B]`` integer labels."""
    return F.cross_entropy(student_logits.float(), labels.long())


def soft_kl(student_logits: Tensor, teacher_probs: Tensor) -> Tensor:
    """``KL(p_T || softmax(z))`` averaged over the batch, ``p_T`` clamped at 1e-8 and renormalised."""
    p_t = teacher_probs.float().clamp(min=_CLAMP)
    p_t = p_t / p_t.sum(dim=-1, keepdim=True)
    return F.kl_div(F.log_softmax(student_logits.float(), dim=-1), p_t, reduction="batchmean")


def distillation_loss(student_logits: Tensor, teacher_probs: Tensor, labels: Tensor, alpha: float = 0.9) -> Tensor:
    """``alpha * KL(p_T || softmax(z)) + (1 - alpha) * CE(z, y)`` (the BoW/CNN loss, alpha = 0.9 in D.2).

    ``alpha=1`` is pure soft-label distillation, ``alpha=0`` the baseline
    cross-entropy.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    return alpha * soft_kl(student_logits, teacher_probs) + (1.0 - alpha) * hard_label_loss(student_logits, labels)


def tempered_distillation_loss(student_logits: Tensor, teacher_probs: Tensor, temperature: float = 2.0) -> Tensor:
    """``T^2 * KL(p_T || softmax(z / T))`` averaged over the batch (the DistilBERT loss, T = 2 in D.2).

    Only the student is divided by ``T``; the teacher's probabilities are
    used as they are (not clamped either: ``kl_div`` counts ``0 * log 0`` as 0).
    """
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return F.kl_div(log_q, teacher_probs.float(), reduction="batchmean") * (temperature * temperature)


def student_loss(
    mode: str, student_logits: Tensor, labels: Tensor, teacher_probs: Tensor | None = None,
    alpha: float = 0.9, temperature: float = 2.0,
) -> Tensor:
    """Dispatch on ``mode``: ``"baseline"`` (CE), ``"distill"`` (alpha mix) or ``"tempered"`` (T^2 KL)."""
    if mode == "baseline":
        return hard_label_loss(student_logits, labels)
    if mode not in ("distill", "tempered"):
        raise ConfigError(f"unknown training mode {mode!r}; use 'baseline', 'distill' or 'tempered'")
    if teacher_probs is None:
        raise ConfigError(f"mode {mode!r} needs teacher probabilities")
    if mode == "distill":
        return distillation_loss(student_logits, teacher_probs, labels, alpha)
    return tempered_distillation_loss(student_logits, teacher_probs, temperature)


__all__ = [
    "distillation_loss", "hard_label_loss", "soft_kl", "student_loss", "tempered_distillation_loss",
]
