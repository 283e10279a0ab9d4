"""The opinion recipe of ``demoscope train`` (SubPOP): LoRA on a causal LM fitted to survey answer distributions.

Each worker loads the model, adds a LoRA adapter (or continues a given one),
wraps it for DDP (Ray's ``prepare_model``) or FSDP2 (our own ``fully_shard``:
Ray's FSDP path refuses CPU, and the same code must run in CPU tests and on GPU
clusters), trains on its shard of the prepared set (a ``DistributedSampler``)
with forward KL (``opinion-kl``) or the ordinal Wasserstein loss
(``opinion-wd``) over the option letters, validates every epoch and reports a
checkpoint (adapter + optimiser + scheduler state) to Ray Train. The best
adapter is the one with the lowest validation loss. Suh et al. 2025, "Language
Model Fine-Tuning on Scaled Survey Data for Predicting Distributions of Public
Opinions" (github.com/JosephJeesungSuh/subpop).
"""

from __future__ import annotations

import math
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import Field

from demoscope.errors import ConfigError
from demoscope.pipelines.train_common import Recipe, TrainSettings, unwrap
from demoscope.pipelines.train_progress import STEP_EVERY, worker_settings
from demoscope.training.lora import LoraSettings
from demoscope.training.progress import ProgressClock, epoch_record, step_record

DESCRIPTION = """\
objective opinion-kl / opinion-wd: LoRA on a causal LM to predict survey answer distributions (SubPOP):
        the next-token distribution after "Answer:" over the letters " A".." J", fitted by forward KL or
        ordinal Wasserstein.
reads   prepared splits from `demoscope prepare` (columns input_prompt, output_dist, ordinal)
writes  OUT/adapter (the LoRA adapter of the lowest validation loss, PEFT format)
example demoscope train --objective opinion-kl --model tiny:llama --num-workers 2 \\
            --train-file runs/prepare/opnqa_QA_train.parquet --val-file runs/prepare/opnqa_QA_val.parquet \\
            --out runs/train --epochs 3 --lora-r 8
        presets: demoscope train --config configs/subpop/llama-2-7b.yaml (GPU cluster)
"""


class OpinionTrainConfig(TrainSettings):
    """``demoscope train --objective opinion-kl|opinion-wd``: LoRA fitted to survey answer distributions."""

    objective: Literal["opinion-kl", "opinion-wd"] = Field(
        "opinion-kl", description="opinion-kl (forward KL) or opinion-wd (ordinal Wasserstein) over the option letters")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA settings (lora.r, lora.alpha, ...)")
    init_adapter: str | None = Field(None, description="start from this LoRA adapter (PEFT folder) instead of a fresh "
                                     "one; its own LoRA settings then apply")
    val_batch_size: int = Field(32, ge=1, description="validation examples per worker per batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimiser step")
    scheduler: Literal["step", "cosine"] = Field("step", description="step: x gamma per epoch; "
                                                 "cosine: warm-up then cosine")
    gamma: float = Field(0.85, gt=0, le=1, description="per-epoch decay of the step scheduler")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="warm-up share of the cosine scheduler")
    warmup_steps: int | None = Field(None, ge=0, description="warm-up length in optimiser steps; "
                                     "overrides warmup_ratio")
    max_grad_norm: float | None = Field(None, gt=0, description="clip gradients to this norm (default: off, as SubPOP)")
    max_length: int = Field(1024, ge=16, description="prompt tokens kept (the end of longer prompts)")
    gradient_checkpointing: bool = Field(False, description="trade compute for activation memory")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="data parallel (ddp) or fully sharded (fsdp)")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")


def epoch_summary(m: dict[str, float]) -> str:
    """An opinion epoch's metrics as one line: training (and validation) KL and Wasserstein, learning rate."""
    val = f"  val kl {m['val_kl']:.4f} wd {m['val_wd']:.4f}" if "val_kl" in m else ""
    return f"train kl {m['train_kl']:.4f} wd {m['train_wd']:.4f}{val}  lr {m['lr']:.2e}"


def check(config: OpinionTrainConfig) -> OpinionTrainConfig:
    """Refuse what cannot run before Ray starts (a bad split row, named; an adapter folder without its config)."""
    from demoscope.surveys.finetuning import read_split

    if config.init_adapter and not (Path(config.init_adapter) / "adapter_config.json").exists():
        raise ConfigError(f"--init-adapter {config.init_adapter} is not a LoRA adapter folder (no adapter_config.json)")
    for path in filter(None, [config.train_file, config.val_file]):
        if not Path(path).exists():
            raise ConfigError(f"training file {path} does not exist")
        read_split(path)  # a bad row fails here, named, before Ray starts
    return config.model_copy(update={"init_adapter": str(Path(config.init_adapter).resolve()) if config.init_adapter
                                     else None})


def train_loop(cfg: dict) -> None:
    """The per-worker training function (runs inside a Ray Train worker)."""
    import ray.train
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_state_dict,
        set_state_dict,
    )
    from torch.utils.data import DataLoader, DistributedSampler

    from demoscope.models import load_causal_lm
    from demoscope.models.names import resolve_model
    from demoscope.training.lora import apply_lora
    from demoscope.training.opinion_data import (
        OpinionDataset,
        collate,
        label_token_ids,
        read_prepared,
    )
    from demoscope.training.opinion_loop import train_epoch, validate
    from demoscope.training.resume import load_trainer_state, scheduler_position
    from demoscope.training.schedules import make_scheduler

    settings, send = worker_settings(cfg)
    config = OpinionTrainConfig.model_validate(settings)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(config.seed)
    bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    model, tokenizer = load_causal_lm(resolve_model(config.model), dtype="bfloat16" if bf16 else "float32",
                                      device=str(device))
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()  # checkpointed blocks need inputs that require grad under LoRA
    if config.init_adapter:  # continue from a trained adapter (e.g. GradEx's meta-trained one)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, config.init_adapter, is_trainable=True)
    else:
        model = apply_lora(model, config.lora)
    labels = label_token_ids(tokenizer)

    def loader(path: str, batch_size: int, shuffle: bool):
        dataset = OpinionDataset(read_prepared(path), tokenizer, config.max_length)
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=config.seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                          collate_fn=partial(collate, pad_id=tokenizer.pad_token_id))

    train_loader = loader(config.train_file, config.batch_size, shuffle=True)
    val_loader = loader(config.val_file, config.val_batch_size, shuffle=False) if config.val_file else None
    wrapped = _wrap(model, config.strategy, device, bf16)
    optimizer = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_loader) / config.grad_accum)
    scheduler = make_scheduler(optimizer, config.scheduler, steps_per_epoch, config.epochs, config.gamma,
                               config.warmup_ratio, config.warmup_steps)
    state_options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)

    start_epoch, best, resumed_from = 0, math.inf, -1
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:  # a restarted worker group, or a re-run of the same job
        with checkpoint.as_directory() as folder:
            state = load_trainer_state(Path(folder) / "trainer_state.pt")  # data only: a planted pickle runs nothing
        set_state_dict(wrapped, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                       options=StateDictOptions(full_state_dict=True, strict=False))
        # The schedule comes from the config (checked to be the run's own); the checkpoint says where it stands.
        scheduler.load_state_dict({**scheduler.state_dict(), **scheduler_position(state["scheduler"])})
        start_epoch, best, resumed_from = state["epoch"] + 1, state["best"], state["epoch"]

    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(Path(config.out) / "tensorboard"))
    objective = "kl" if config.objective == "opinion-kl" else "wd"
    clock = ProgressClock(steps_per_epoch * config.epochs, done_before=start_epoch * steps_per_epoch, every=STEP_EVERY)

    def reduce(sums: dict[str, float]) -> dict[str, float]:
        if world == 1:
            return sums
        values = torch.tensor(list(sums.values()), dtype=torch.float64)
        dist.all_reduce(values)
        return dict(zip(sums, values.tolist()))

    for epoch in range(start_epoch, config.epochs):
        train_loader.sampler.set_epoch(epoch)
        step0 = epoch * steps_per_epoch

        def log_step(step: int, metrics: dict[str, float], epoch: int = epoch, step0: int = step0) -> None:
            if writer:
                writer.add_scalar("train/loss", metrics["loss"], step0 + step)
                writer.add_scalar("train/lr", metrics["lr"], step0 + step)
            if send and clock.due():
                send(step_record(clock, epoch, config.epochs, step, steps_per_epoch, metrics["loss"], step0 + step))

        started = time.perf_counter()
        sums = reduce(train_epoch(wrapped, train_loader, optimizer, scheduler, labels, objective,
                                  config.grad_accum, device, None, config.max_grad_norm, log_step))
        seconds = time.perf_counter() - started
        metrics = {"epoch": epoch, "train_kl": sums["kl"] / sums["items"], "train_wd": sums["wd"] / sums["items"],
                   "lr": scheduler.get_last_lr()[0], "resumed_from_epoch": resumed_from,
                   "train_seconds": seconds, "examples_per_second": sums["items"] / seconds}
        if val_loader is not None:
            val = reduce(validate(wrapped, val_loader, labels, device))
            metrics.update(val_kl=val["kl"] / val["items"], val_wd=val["wd"] / max(val["wd_items"], 1.0))
            metrics["val_loss"] = metrics["val_kl"] if objective == "kl" else val["wd"] / val["items"]
        else:
            metrics["val_loss"] = metrics[f"train_{objective}"]
        best = min(best, metrics["val_loss"])
        if writer:
            for key, value in metrics.items():
                if key.startswith(("train_", "val_")):
                    writer.add_scalar(key.replace("_", "/", 1), value, epoch)
            writer.flush()
        model_state, optim_state = get_state_dict(wrapped, optimizer, options=state_options)  # collective
        if rank == 0:
            with tempfile.TemporaryDirectory() as folder:
                unwrap(wrapped).save_pretrained(Path(folder) / "adapter", state_dict=model_state)
                torch.save({"model": model_state, "optim": optim_state, "scheduler": scheduler.state_dict(),
                            "epoch": epoch, "best": best}, Path(folder) / "trainer_state.pt")
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        else:
            ray.train.report(metrics)
        if send:  # after the report, so a printed epoch is one that Ray Train has registered
            send(epoch_record(clock, config.epochs, metrics, step0 + steps_per_epoch,
                              epoch_summary(metrics)))
    if writer:
        writer.close()


def _wrap(model, strategy: str, device, bf16: bool):
    """DDP through Ray's prepare_model; FSDP2 ``fully_shard`` per decoder layer, then the root."""
    import ray.train.torch

    if strategy == "ddp":
        return ray.train.torch.prepare_model(model, parallel_strategy="ddp")
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    model.to(device)
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16
              else MixedPrecisionPolicy())
    layer_names = set(getattr(_base(model), "_no_split_modules", None) or [])
    for module in model.modules():
        if type(module).__name__ in layer_names:
            fully_shard(module, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


RECIPE = Recipe(config=OpinionTrainConfig, loop=train_loop, artifact="adapter", checkpoint_folder="adapter",
                summary=epoch_summary, score=lambda config: "val_loss")
