"""The preference recipe of ``demoscope train`` (PoliTune): DPO or SFT with LoRA / QLoRA through TRL, on Ray Train.

Each worker runs TRL's ``DPOTrainer`` / ``SFTTrainer`` (with a PEFT LoRA
config; QLoRA loads the base in 4-bit NF4 on a GPU), and Ray's
``RayTrainReportCallback`` hands every epoch's Trainer checkpoint to Ray Train.
The exported adapter is the lowest ``eval_loss`` with a validation file, else
the last epoch's. Agiza et al. 2024, "PoliTune: Analyzing the Impact of Data
Selection and Fine-Tuning on Economic and Political Biases in Large Language
Models" (github.com/scale-lab/PoliTune).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field

from demoscope.errors import ConfigError
from demoscope.pipelines.train_common import Recipe, TrainSettings
from demoscope.training.lora import LoraSettings

DESCRIPTION = """\
objective dpo / sft: LoRA (or QLoRA with --load-in-4bit) through TRL's DPOTrainer / SFTTrainer (PoliTune).
reads   prompt, chosen, rejected: a .jsonl/.json/.csv/.parquet file, or a Hugging Face dataset name (sft learns
        the chosen answers)
writes  OUT/adapter (adapter_config.json + adapter_model.safetensors of the best epoch: lowest eval_loss with
        --val-file, else the last)
example demoscope train --objective dpo --model smollm2:135m --train-file runs/pairs/left.jsonl \\
            --out runs/dpo-left --epochs 1 --num-workers 1
        presets: demoscope train --config configs/politune/llama-3-8b-instruct-dpo-left.yaml (GPU)
"""


class PreferenceTrainConfig(TrainSettings):
    """``demoscope train --objective dpo|sft``: LoRA / QLoRA preference tuning through TRL."""

    objective: Literal["dpo", "sft"] = Field("dpo", description="dpo (DPOTrainer) or sft (SFTTrainer on the chosen "
                                                               "answers, completion-only loss)")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA settings (lora.r, lora.alpha, ...)")
    beta: float = Field(0.1, gt=0, description="dpo: strength of the KL tie to the reference model")
    prompt_template: Literal["none", "alpaca", "chat", "alpaca-chat"] = Field(
        "alpaca", description="how prompts are wrapped: alpaca (plain text), chat (the model's chat template), "
                              "alpaca-chat (the Alpaca text as a user turn in the chat template: PoliTune's recipe)")
    max_chars: int | None = Field(None, ge=1, description="drop pairs longer than this many characters of raw text "
                                                         "(PoliTune's recipe: 1024)")
    load_in_4bit: bool = Field(False, description="QLoRA: the base model in 4-bit NF4 (GPU with the gpu extra)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimiser step")
    scheduler: Literal["linear", "cosine"] = Field("linear", description="the Trainer's learning-rate schedule after "
                                                                        "warm-up")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="warm-up share of the steps")
    warmup_steps: int | None = Field(None, ge=0, description="warm-up length in optimiser steps; overrides "
                                                            "warmup_ratio (PoliTune's DPO recipe: 100)")
    max_grad_norm: float | None = Field(None, gt=0, description="clip gradients to this norm (default: the Trainer's)")
    max_length: int = Field(1024, ge=16, description="tokens kept per example")
    gradient_checkpointing: bool = Field(False, description="trade compute for activation memory")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="data parallel (ddp) or the Trainer's FSDP2 (GPU "
                                                                "only)")


def epoch_summary(m: dict[str, float]) -> str:
    """A TRL epoch as one line, in the Trainer's own log names (loss, DPO rewards, eval_loss)."""
    shown = {k: m[k] for k in ("loss", "rewards/accuracies", "rewards/margins", "eval_loss") if k in m}
    return "  ".join(f"{k} {v:.4f}" for k, v in shown.items())


def check(config: PreferenceTrainConfig) -> PreferenceTrainConfig:
    """Refuse what cannot run before Ray starts."""
    for path in filter(None, [config.train_file, config.val_file]):
        hub_name = path.count("/") == 1 and not Path(path).suffix
        if not Path(path).exists() and not hub_name:
            raise ConfigError(f"training file {path} does not exist")
    if config.strategy == "fsdp" and not config.use_gpu:
        raise ConfigError("--strategy fsdp for dpo/sft shards through accelerate, which supports FSDP only on GPUs; "
                          "on CPU workers use --strategy ddp (or --use-gpu on a GPU cluster)")
    return config


def preference_loop(cfg: dict) -> None:
    """Per-worker DPO / SFT through TRL; Ray Train runs it and keeps the Trainer's checkpoints."""
    import ray.train
    from ray.train.huggingface.transformers import RayTrainReportCallback

    from demoscope.models import load_causal_lm
    from demoscope.models.names import resolve_model
    from demoscope.pipelines.train_progress import STEP_EVERY, worker_settings
    from demoscope.training.preference import (
        progress_callback,
        run_facts,
        train_dpo,
        train_sft,
    )
    from demoscope.training.preference_data import prepare_pairs

    settings, send = worker_settings(cfg)
    config = PreferenceTrainConfig.model_validate(settings)
    # The Trainer places the model; QLoRA loads it in 4 bits on the GPU (the `gpu` extra's bitsandbytes).
    model, tokenizer = load_causal_lm(resolve_model(config.model), dtype="auto",
                                      device="cuda" if config.load_in_4bit else "cpu", load_in_4bit=config.load_in_4bit)
    if config.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    model.train()

    def frame(path: str):
        return prepare_pairs(path, config.prompt_template, tokenizer, config.max_chars)

    # The Trainer's own checkpoints go to a scratch folder (Ray Train keeps the copies it is sent);
    # it is removed however the worker ends, so runs leave no debris in the temp folder.
    staging = tempfile.mkdtemp(prefix="demoscope-trainer-")
    try:
        resume, resumed_step = None, -1
        checkpoint = ray.train.get_checkpoint()
        if checkpoint:  # restarted or re-run: continue the Trainer from its last save
            with checkpoint.as_directory() as folder:
                resume = shutil.copytree(Path(folder) / RayTrainReportCallback.CHECKPOINT_NAME,
                                         Path(staging) / "resume")
            resumed_step = json.loads((Path(resume) / "trainer_state.json").read_text())["global_step"]
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(config.out) / "tensorboard")  # transformers 5 reads it here
        callbacks = [run_facts(resumed_step), RayTrainReportCallback()]
        if send:
            callbacks.append(progress_callback(send, epoch_summary, every=STEP_EVERY))
        common = dict(
            model=model, tokenizer=tokenizer, train=frame(config.train_file), output_dir=Path(staging) / "trainer",
            lora=config.lora, lr=config.lr, epochs=config.epochs, batch_size=config.batch_size,
            max_length=config.max_length, seed=config.seed, callbacks=callbacks,
            report_to=["tensorboard"] if ray.train.get_context().get_world_rank() == 0 else "none",
            extra=trainer_arguments(config, model), eval_data=frame(config.val_file) if config.val_file else None,
            resume_from=resume,
        )
        if config.objective == "dpo":
            train_dpo(beta=config.beta, **common)
        else:
            train_sft(**common)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def trainer_arguments(config: PreferenceTrainConfig, model) -> dict:
    """The ``DPOConfig`` / ``SFTConfig`` fields our config sets beyond the basics.

    ``strategy="fsdp"`` becomes the Trainer's own FSDP2 (through accelerate),
    one unit per decoder layer, with FSDP's activation checkpointing in place of
    the Trainer's (the two together would all-gather twice). Accelerate only
    shards on accelerators, so :func:`check` refuses it for CPU workers.
    """
    # transformers 5 folds warmup_ratio into warmup_steps: a float below 1 is a ratio of the steps, an int a count.
    warmup = config.warmup_steps if config.warmup_steps is not None else config.warmup_ratio
    extra = {"save_strategy": "epoch", "weight_decay": config.weight_decay,
             "gradient_accumulation_steps": config.grad_accum,
             "lr_scheduler_type": config.scheduler, "warmup_steps": warmup}
    if config.max_grad_norm:
        extra["max_grad_norm"] = config.max_grad_norm
    if config.val_file:
        extra["eval_strategy"] = "epoch"
    if config.strategy == "fsdp":
        extra.update(fsdp=True, fsdp_config={
            "version": 2, "transformer_layer_cls_to_wrap": _decoder_layer_names(model), "reshard_after_forward": True,
            "activation_checkpointing": config.gradient_checkpointing})
    elif config.gradient_checkpointing:
        extra["gradient_checkpointing"] = True
    return extra


def _decoder_layer_names(model) -> list[str]:
    """Class names of the model's repeated blocks (``_no_split_modules``), FSDP's wrapping units."""
    names = list(getattr(model, "_no_split_modules", None) or [])
    if not names:
        raise ConfigError(f"{type(model).__name__} does not name its decoder-layer class; FSDP needs one: use ddp")
    return names


RECIPE = Recipe(config=PreferenceTrainConfig, loop=preference_loop, artifact="adapter", checkpoint_folder="checkpoint",
                summary=epoch_summary, keep=("adapter_config.json", "adapter_model.safetensors"),
                score=lambda config: "eval_loss" if config.val_file else None)
