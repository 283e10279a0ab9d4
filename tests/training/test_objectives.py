"""SubPOP training objectives (§3.2-3.4) on hand-computed values."""

import math

import numpy as np
import pytest
import torch

from demoscope.metrics import ordinal_wasserstein
from demoscope.training.objectives import (
    NUM_LABELS,
    forward_kl,
    option_log_probabilities,
    option_probabilities,
    ordinal_wasserstein_loss,
    pad_targets,
)

# Four answers + refusal 0.1 (the responses sum to 1, so r sums to 1.1).
RESPONSES = [0.1, 0.2, 0.3, 0.4]
REFUSAL = 0.1
ORDINAL = [1.0, 2.0, 3.0, 4.0]


def padded(responses, refusal, ordinal):
    dist, ords = pad_targets([*responses, refusal], ordinal)
    return torch.tensor(dist), torch.tensor(ords)


def test_pad_targets_for_a_four_option_question():
    dist, ords = pad_targets([*RESPONSES, REFUSAL], ORDINAL)
    assert dist == [0.1, 0.2, 0.3, 0.4, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0]
    # The refusal slot and the pads take the top ordinal (they merge into it).
    assert ords == [1.0, 2.0, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]


def test_pad_targets_rejects_more_than_ten_options():
    with pytest.raises(ValueError, match="at most 10"):
        pad_targets([0.1] * 11, [1.0] * 10)


def test_option_probabilities_match_manual_softmax_then_renormalise():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([5, 7, 11, 13, 17, 19, 23, 29, 31, 37])
    full = torch.softmax(logits, dim=-1)[:, ids]
    want = full / full.sum(-1, keepdim=True)
    got = option_probabilities(logits, ids)
    assert got.shape == (3, NUM_LABELS)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(option_log_probabilities(logits, ids), want.log())


def test_forward_kl_at_the_normalised_target_is_s_log_s():
    r, _ = padded(RESPONSES, REFUSAL, ORDINAL)
    s = 1 + REFUSAL
    kl = forward_kl((r / s).unsqueeze(0), r.unsqueeze(0))
    assert kl.shape == (1,)
    assert kl.item() == pytest.approx(s * math.log(s), abs=1e-5)  # 0.104841


def test_forward_kl_gradient_vanishes_at_q_proportional_to_r():
    r = torch.tensor([[0.05, 0.1, 0.15, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]]) * 1.1
    logits = (r / r.sum()).log().requires_grad_(True)
    forward_kl(torch.softmax(logits, -1), r).sum().backward()
    assert logits.grad.abs().max().item() < 1e-5
    # ...while a perturbed point has a clear gradient.
    other = (logits.detach() + torch.linspace(0, 1, 10)).requires_grad_(True)
    forward_kl(torch.softmax(other, -1), r).sum().backward()
    assert other.grad.abs().max().item() > 1e-2


def test_optimising_free_logits_converges_to_r_over_one_plus_refusal():
    r, _ = padded([0.2, 0.3, 0.4, 0.1], 0.2, ORDINAL)  # sums to 1.2
    r = r.unsqueeze(0)
    logits = torch.zeros(1, NUM_LABELS, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(400):
        opt.zero_grad()
        forward_kl(torch.softmax(logits, -1), r).sum().backward()
        opt.step()
    # Letters with target 0 (pads) only approach 0, hence the tolerance.
    torch.testing.assert_close(torch.softmax(logits, -1), r / 1.2, atol=2e-3, rtol=0)


def test_wd_loss_matches_numpy_metric_on_normalised_inputs():
    rng = np.random.default_rng(3)
    ordinals = [
        [1.0, 2.0, 1.5],
        [1.0, 2.0, -1.0],
        [-1.0, 1.0, 2.0, 3.0, 4.0],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    ]
    rs, qs, vs = [], [], []
    for ordinal in ordinals:
        k = len(ordinal) + 1  # + refusal
        dist, ords = pad_targets(list(rng.dirichlet(np.ones(k)) * 1.2), ordinal)
        rs.append(dist)
        vs.append(ords)
        qs.append(rng.dirichlet(np.ones(NUM_LABELS)))  # mass on pads too
    r, q, v = torch.tensor(rs), torch.tensor(np.array(qs), dtype=torch.float32), torch.tensor(vs)
    got = ordinal_wasserstein_loss(q, r, v)
    for i in range(len(ordinals)):
        rn, qn = r[i].numpy() / r[i].sum().item(), q[i].numpy() / q[i].sum().item()
        want = ordinal_wasserstein(rn, qn, v[i].numpy())
        assert got[i].item() == pytest.approx(want, abs=1e-5)
        assert want > 0.01  # a real distance, not a trivial zero


def test_wd_loss_on_the_verified_examples():
    # §4.2's [1,2,1.5] -> 0.15 and [1,2,-1] -> 1/7, laid out as padded rows.
    r = torch.tensor([[0.1, 0.5, 0.4] + [0.0] * 7, [0.2, 0.5, 0.3] + [0.0] * 7])
    q = torch.tensor([[0.2, 0.3, 0.5] + [0.0] * 7, [0.3, 0.4, 0.3] + [0.0] * 7])
    v = torch.tensor([[1.0, 2.0, 1.5] + [2.0] * 7, [1.0, 2.0, -1.0] + [2.0] * 7])
    torch.testing.assert_close(ordinal_wasserstein_loss(q, r, v), torch.tensor([0.15, 1 / 7]))


def test_wd_loss_is_zero_for_equal_ordinals_and_mixed_batch_backprops():
    logits = torch.randn(3, 20, generator=torch.Generator().manual_seed(1), requires_grad=True)
    ids = torch.arange(10)
    r0, v0 = padded(RESPONSES, REFUSAL, ORDINAL)
    r1, v1 = padded([0.5, 0.5], 0.0, [1.0, 1.0])  # SubPOP-Train: all ordinals 1
    r = torch.stack([r0, r1, r0])
    v = torch.stack([v0, v1, v0])
    wd = ordinal_wasserstein_loss(option_probabilities(logits, ids), r, v)
    assert wd[1].item() == 0.0 and wd[0].item() > 0
    wd.mean().backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[1].abs().max().item() == 0.0  # the non-ordinal row gets no gradient
    assert logits.grad[0, :10].abs().max().item() > 0


def test_batch_of_only_non_ordinal_rows_backprops_without_error():
    logits = torch.randn(2, 12, requires_grad=True)
    r, v = padded([0.3, 0.7], 0.05, [1.0, 1.0])
    q = option_probabilities(logits, torch.arange(10))
    loss = ordinal_wasserstein_loss(q, r.expand(2, -1), v.expand(2, -1)).mean()
    loss.backward()  # the reference crashes here; ours gives a zero gradient
    assert loss.item() == 0.0
    assert logits.grad is not None and logits.grad.abs().max().item() == 0.0
    assert (forward_kl(q, r.expand(2, -1)) > 0).all()  # the KL objective still has something to learn
