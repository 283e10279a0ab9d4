"""Learning-rate schedules of SubPOP's trainer (§3.5), stepped once per optimiser step."""

from __future__ import annotations

import math
from typing import Literal

import torch


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: Literal["step", "cosine"],
    steps_per_epoch: int,
    epochs: int,
    gamma: float = 0.85,
    warmup_ratio: float = 0.1,
    warmup_steps: int | None = None,
) -> torch.optim.lr_scheduler.LRScheduler:
    """``step``: x ``gamma`` per epoch, spread over its optimiser steps; ``cosine``: linear warm-up then cosine to 0.

    ``steps_per_epoch`` counts optimiser steps (batches / gradient accumulation).
    The warm-up lasts ``warmup_steps`` optimiser steps if given, else
    ``warmup_ratio`` of all of them.
    """
    steps_per_epoch = max(1, steps_per_epoch)
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=gamma ** (1 / steps_per_epoch))
    total = max(1, steps_per_epoch * epochs)
    warmup = warmup_steps if warmup_steps is not None else int(warmup_ratio * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
