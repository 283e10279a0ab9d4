"""Distillation losses (reference D.2) against hand-computed values."""

import math

import pytest
import torch

from demoscope.distill import distillation_loss, hard_label_loss, student_loss, tempered_distillation_loss
from demoscope.errors import ConfigError

# One row: student logits (0, 0) -> q = (0.5, 0.5); teacher (0.25, 0.75); gold label 1.
Z = torch.tensor([[0.0, 0.0]])
P = torch.tensor([[0.25, 0.75]])
Y = torch.tensor([1])
KL_TS = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # KL(teacher || student) = 0.130812...
KL_ST = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # the other direction = 0.143841...
CE = math.log(2)


def test_hard_label_loss_is_cross_entropy():
    z = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert hard_label_loss(z, torch.tensor([0, 1])).item() == pytest.approx(expected, abs=1e-6)


def test_distillation_loss_is_kl_teacher_to_student_plus_ce():
    assert distillation_loss(Z, P, Y, alpha=0.9).item() == pytest.approx(0.9 * KL_TS + 0.1 * CE, abs=1e-6)
    assert KL_TS == pytest.approx(0.130812, abs=1e-6) and abs(KL_TS - KL_ST) > 0.01  # the direction matters


def test_alpha_weighting_ends():
    assert distillation_loss(Z, P, Y, alpha=0.0).item() == pytest.approx(CE, abs=1e-6)
    assert distillation_loss(Z, P, Y, alpha=1.0).item() == pytest.approx(KL_TS, abs=1e-6)
    assert distillation_loss(Z, P, Y, alpha=0.5).item() == pytest.approx(0.5 * KL_TS + 0.5 * CE, abs=1e-6)
    with pytest.raises(ConfigError):
        distillation_loss(Z, P, Y, alpha=1.5)


def test_teacher_is_clamped_and_renormalised_and_the_batch_averaged():
    # A hard teacher (1, 0) becomes (1, 1e-8) / (1 + 1e-8): finite loss.
    z = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # q = (.5, .5) and (.75, .25)
    p = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    eps = 1e-8
    p0 = (1 / (1 + eps), eps / (1 + eps))
    row0 = p0[0] * math.log(p0[0] / 0.5) + p0[1] * math.log(p0[1] / 0.5)
    row1 = 0.25 * math.log(0.25 / 0.75) + 0.75 * math.log(0.75 / 0.25)
    got = distillation_loss(z, p, torch.tensor([0, 1]), alpha=1.0).item()
    assert got == pytest.approx((row0 + row1) / 2, abs=1e-6)  # batchmean: sum over rows / batch size


def test_kl_gradient_is_student_minus_teacher():
    z = torch.tensor([[0.3, -1.2], [2.0, 0.5]], requires_grad=True)
    p = torch.tensor([[0.1, 0.9], [0.6, 0.4]])
    distillation_loss(z, p, torch.tensor([1, 0]), alpha=1.0).backward()
    torch.testing.assert_close(z.grad, (torch.softmax(z.detach(), -1) - p) / 2)


def test_tempered_loss_scales_by_t_squared_and_leaves_the_teacher_untempered():
    z = torch.tensor([[2.0, 0.0]])
    p = torch.tensor([[0.3, 0.7]])
    q = torch.softmax(z / 2, dim=-1)[0].tolist()  # student at T = 2: softmax(1, 0)
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip([0.3, 0.7], q))
    assert tempered_distillation_loss(z, p, temperature=2.0).item() == pytest.approx(4 * kl, abs=1e-6)
    # A tempered teacher would give another value.
    p_t = torch.softmax(torch.log(p) / 2, dim=-1)[0].tolist()
    tempered_teacher = 4 * sum(pi * math.log(pi / qi) for pi, qi in zip(p_t, q))
    assert abs(tempered_teacher - 4 * kl) > 0.01
    # T = 1 is plain KL(teacher || student) with no hard-label term.
    assert tempered_distillation_loss(Z, P, temperature=1.0).item() == pytest.approx(KL_TS, abs=1e-6)
    with pytest.raises(ConfigError):
        tempered_distillation_loss(Z, P, temperature=0.0)


def test_student_loss_dispatches_on_mode():
    assert student_loss("baseline", Z, Y).item() == pytest.approx(CE, abs=1e-6)
    assert student_loss("distill", Z, Y, P, alpha=1.0).item() == pytest.approx(KL_TS, abs=1e-6)
    assert student_loss("tempered", Z, Y, P, temperature=1.0).item() == pytest.approx(KL_TS, abs=1e-6)
    with pytest.raises(ConfigError, match="teacher"):
        student_loss("distill", Z, Y)
    with pytest.raises(ConfigError, match="unknown training mode"):
        student_loss("dpo", Z, Y, P)
