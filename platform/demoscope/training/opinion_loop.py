"""The opinion fine-tuning loop in plain PyTorch: one epoch of training, one validation pass.

Nothing here knows about Ray: ``demoscope.pipelines.train`` runs these
functions inside Ray Train workers (with DDP or FSDP wrapping the model and a
distributed sampler feeding the loader) and reduces their sums across ranks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Literal

import torch

from demoscope.training.objectives import forward_kl, option_probabilities, ordinal_wasserstein_loss

Objective = Literal["kl", "wd"]


def target_logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token logits after each (left-padded) prompt: only the last position is projected."""
    out = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"], logits_to_keep=1, use_cache=False,
    )
    return out.logits[:, -1, :].float()


def batch_losses(model, batch: dict[str, torch.Tensor], label_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item forward KL and ordinal Wasserstein losses (SubPOP §3.4) for one batch."""
    q = option_probabilities(target_logits(model, batch), label_ids)
    return forward_kl(q, batch["target"]), ordinal_wasserstein_loss(q, batch["target"], batch["ordinal"])


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train_epoch(
    model,
    loader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    label_ids: torch.Tensor,
    objective: Objective,
    grad_accum: int = 1,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    max_grad_norm: float | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Train for one pass over ``loader``; returns summed ``kl``, ``wd`` and ``items`` (for cross-rank means).

    Both losses are computed and logged; only ``objective`` is backpropagated,
    averaged over the batch and divided by ``grad_accum`` (as SubPOP does).
    ``on_step(step, metrics)`` is called after every optimiser step.
    """
    device = torch.device(device)
    label_ids = label_ids.to(device)
    model.train()
    sums = {"kl": 0.0, "wd": 0.0, "items": 0.0}
    n_batches = len(loader)
    step = 0
    optimizer.zero_grad(set_to_none=True)
    for index, batch in enumerate(loader):
        batch = _to(batch, device)
        last_micro = (index + 1) % grad_accum == 0 or index + 1 == n_batches
        # DDP: skip the gradient all-reduce on all but the last micro-batch of a step.
        skip_sync = not last_micro and hasattr(model, "no_sync")
        with model.no_sync() if skip_sync else contextlib.nullcontext():
            with torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext():
                kl, wd = batch_losses(model, batch, label_ids)
                loss = (kl if objective == "kl" else wd).mean() / grad_accum
            loss.backward()
        sums["kl"] += float(kl.detach().sum())
        sums["wd"] += float(wd.detach().sum())
        sums["items"] += len(kl)
        if last_micro:
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if on_step:
                on_step(step, {"loss": float(loss.detach()) * grad_accum, "lr": scheduler.get_last_lr()[0]})
    return sums


@torch.inference_mode()
def validate(
    model, loader: Iterable[dict[str, torch.Tensor]], label_ids: torch.Tensor, device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Summed validation ``kl``, ``wd`` over items and ``wd_items`` (items with a non-zero WD, as SubPOP's mean)."""
    device = torch.device(device)
    label_ids = label_ids.to(device)
    model.eval()
    sums = {"kl": 0.0, "wd": 0.0, "items": 0.0, "wd_items": 0.0}
    for batch in loader:
        batch = _to(batch, device)
        autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
        with autocast:
            kl, wd = batch_losses(model, batch, label_ids)
        sums["kl"] += float(kl.sum())
        sums["wd"] += float(wd.sum())
        sums["items"] += len(kl)
        sums["wd_items"] += float((wd > 0).sum())
    return sums
