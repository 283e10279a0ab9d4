"""Opinion-distribution training objectives: forward KL and ordinal WD (SubPOP §3).

A fine-tuned model's opinion is the next-token distribution over the option
letters " A".." J" after the prompt's final "Answer:", renormalised over those
ten letters (§3.3). It is trained against the padded survey distribution with
forward KL (the paper's objective) or an ordinal Wasserstein loss (§3.4).
Pure torch: the caller picks the logits row and the letter token ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

# SubPOP pads every question to ten option letters A..J (responses + refusal).
NUM_LABELS = 10

# The reference adds this inside logs so that zero targets and probabilities
# give finite values; kept for faithfulness of reported loss values.
_LOG_EPS = 1e-8


def pad_targets(output_dist: Sequence[float], ordinal: Sequence[float]) -> tuple[list[float], list[float]]:
    """Pad one example's target distribution and ordinal list to ``NUM_LABELS``.

    Takes ``output_dist`` (K entries: responses then the refusal share) and
    ``ordinal`` (K-1 or fewer entries) and returns them padded separately as
    SubPOP §3.2 does: the distribution with zeros, the ordinal with
    ``max(ordinal)``, so the refusal slot and the pads join the top ordinal
    category. Raises ValueError on more than ten entries or an empty ordinal.
    """
    dist, ords = [float(x) for x in output_dist], [float(x) for x in ordinal]
    if len(dist) > NUM_LABELS or len(ords) > NUM_LABELS:
        raise ValueError(
            f"SubPOP scores at most {NUM_LABELS} options (A..J); got {len(dist)} distribution "
            f"entries and {len(ords)} ordinals"
        )
    if not ords:
        raise ValueError("ordinal is empty; every question needs at least one option position")
    return dist + [0.0] * (NUM_LABELS - len(dist)), ords + [max(ords)] * (NUM_LABELS - len(ords))


def option_log_probabilities(logits: Tensor, option_token_ids: Tensor) -> Tensor:
    """Log-probabilities of the option letters, renormalised over those letters.

    ``logits`` is ``[B, V]`` (the row at ``target_token_position - 1``) and
    ``option_token_ids`` a ``[NUM_LABELS]`` LongTensor of the " A".." J" ids.
    Returns ``log q`` of shape ``[B, NUM_LABELS]`` (SubPOP §3.3). Softmax over
    the vocabulary, gather, renormalise is algebraically a log-softmax over
    the gathered logits, which avoids underflow of small letter probabilities.
    Computed in float32 because bf16 logits lose the gaps between letters.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [batch, vocab], got shape {tuple(logits.shape)}")
    gathered = logits.float().index_select(-1, option_token_ids.to(logits.device).long())
    return torch.log_softmax(gathered, dim=-1)


def option_probabilities(logits: Tensor, option_token_ids: Tensor) -> Tensor:
    """Option probabilities ``q`` ``[B, NUM_LABELS]``; see :func:`option_log_probabilities`."""
    return option_log_probabilities(logits, option_token_ids).exp()


def forward_kl(q: Tensor, r: Tensor) -> Tensor:
    """Per-item forward KL ``KL(r || q)`` exactly as SubPOP's ``ce`` loss (§3.4).

    ``q`` and ``r`` are ``[B, NUM_LABELS]``; ``r`` is the padded target whose
    sum is ``1 + refusal`` and is deliberately *not* renormalised, as in the
    reference. Returns ``sum r*log(r+eps) - sum r*log(q+eps)`` of shape
    ``[B]``. Its minimiser over q is ``r / (1 + refusal)``.
    """
    q, r = q.float(), r.float()
    return (r * torch.log(r + _LOG_EPS)).sum(-1) - (r * torch.log(q + _LOG_EPS)).sum(-1)


def ordinal_wasserstein_loss(q: Tensor, r: Tensor, ordinal: Tensor) -> Tensor:
    """Per-item ordinal Wasserstein loss, differentiable in ``q`` (SubPOP §3.4 ``wd``).

    ``q``, ``r`` and ``ordinal`` are ``[B, NUM_LABELS]``. Both distributions
    are normalised to sum 1, sorted by ordinal, options with ordinal < 0 are
    dropped and both sides renormalised; the loss is the range-normalised
    1-D Wasserstein distance, as :func:`demoscope.metrics.ordinal_wasserstein`.
    Items whose ordinals are all equal (all of SubPOP-Train), or where a side
    has no mass on kept options, get 0 with a zero gradient. Returns ``[B]``,
    always attached to ``q``'s graph so ``backward()`` works on any batch.
    """
    wd, _ = _wasserstein_and_validity(q, r, ordinal)
    return wd


def _wasserstein_and_validity(q: Tensor, r: Tensor, ordinal: Tensor) -> tuple[Tensor, Tensor]:
    """Batched ordinal WD and a mask of the items where it is defined (not 0 by rule)."""
    q, r = q.float(), r.float()
    v = ordinal.to(device=q.device, dtype=q.dtype).expand_as(q)
    q = q / _safe(q.sum(-1, keepdim=True))
    r = r / _safe(r.sum(-1, keepdim=True))

    v_sorted, order = torch.sort(v, dim=-1, stable=True)
    # Dropping ordinal < 0 is done by zeroing their mass; after sorting they
    # sit at the front, where their cumulative sums stay 0 on both sides.
    keep = v_sorted >= 0
    q_kept = q.gather(-1, order) * keep
    r_kept = r.gather(-1, order) * keep
    q_mass, r_mass = q_kept.sum(-1), r_kept.sum(-1)
    q_kept = q_kept / _safe(q_mass).unsqueeze(-1)
    r_kept = r_kept / _safe(r_mass).unsqueeze(-1)

    big = torch.finfo(v.dtype).max
    v_max = v_sorted[:, -1]
    v_min = torch.where(keep, v_sorted, torch.full_like(v_sorted, big)).min(-1).values
    span = torch.where(keep.any(-1), v_max - v_min, torch.zeros_like(v_max))
    # A single surviving ordinal position (span 0) would be 0/0: treat it like
    # the non-ordinal rule, which it is after the drop.
    valid = (span > 0) & (q_mass > 0) & (r_mass > 0)

    # Gap i spans sorted positions i -> i+1; it counts only between kept
    # options (kept ones form a suffix, so keep[i] implies keep[i+1]).
    gaps = (v_sorted[:, 1:] - v_sorted[:, :-1]) * keep[:, :-1]
    cum_diff = (q_kept.cumsum(-1) - r_kept.cumsum(-1))[:, :-1].abs()
    wd = (cum_diff * gaps).sum(-1) / _safe(span)
    # where() keeps the graph (zero gradient for invalid items); every branch
    # above is finite, so no NaN gradient leaks through the masked entries.
    return torch.where(valid, wd, torch.zeros_like(wd)), valid


def _safe(denominator: Tensor) -> Tensor:
    """Replace zeros by ones so masked-out items divide safely."""
    return torch.where(denominator == 0, torch.ones_like(denominator), denominator)
