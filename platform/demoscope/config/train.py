"""The training job's config (one model for every objective; fields unused by an objective are ignored)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from demoscope.training.lora import LoraSettings


class TrainConfig(BaseModel):
    """``demoscope train``: fine-tune a causal LM with LoRA (or train a distillation student) on Ray Train."""

    model_config = ConfigDict(extra="forbid")
    objective: Literal["opinion-kl", "opinion-wd", "dpo", "sft", "distill"] = Field("opinion-kl", description="training objective")
    model: str = Field("tiny:llama", description="Hugging Face id, local path, or tiny:llama / tiny:gpt2 (offline factory)")
    train_file: str = Field("", description="training data: a prepared opinion split, or for dpo/sft a prompt,chosen,rejected file")
    val_file: str | None = Field(None, description="prepared validation split (default: none)")
    out: str = Field("runs/train", description="output folder (adapter, metrics, TensorBoard logs, checkpoints)")
    restart: bool = Field(False, description="start over in OUT: remove its earlier run first")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA settings (lora.r, lora.alpha, ...)")
    init_adapter: str | None = Field(None, description="opinion objectives: start from this LoRA adapter (PEFT folder) "
                                     "instead of a fresh one; its own LoRA settings then apply")
    epochs: int = Field(3, ge=1, description="passes over the training set")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    batch_size: int = Field(32, ge=1, description="examples per worker per micro-batch")
    val_batch_size: int = Field(32, ge=1, description="validation examples per worker per batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimiser step")
    scheduler: Literal["step", "cosine"] = Field("step", description="step: x gamma per epoch; cosine: warm-up then cosine")
    gamma: float = Field(0.85, gt=0, le=1, description="per-epoch decay of the step scheduler")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="warm-up share of the cosine scheduler")
    warmup_steps: int | None = Field(None, ge=0, description="warm-up length in optimiser steps; overrides warmup_ratio "
                                                            "(PoliTune's DPO recipe: 100)")
    max_grad_norm: float | None = Field(None, gt=0, description="clip gradients to this norm (default: off, as SubPOP)")
    max_length: int = Field(1024, ge=16, description="prompt tokens kept (the end of longer prompts)")
    gradient_checkpointing: bool = Field(False, description="trade compute for activation memory")
    seed: int = Field(42, description="random seed")
    num_workers: int = Field(2, ge=1, description="Ray Train workers")
    use_gpu: bool = Field(False, description="one GPU per worker (NCCL, bf16)")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="data parallel (ddp) or fully sharded (fsdp)")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    max_failures: int = Field(2, ge=0, description="worker-group restarts from the last checkpoint after a failure")
    storage_path: str | None = Field(None, description="where Ray Train keeps checkpoints (default OUT/ray; a cloud URI on clusters)")
    beta: float = Field(0.1, gt=0, description="dpo: strength of the KL tie to the reference model")
    prompt_template: Literal["none", "alpaca", "chat", "alpaca-chat"] = Field(
        "alpaca", description="dpo/sft: how prompts are wrapped: alpaca (plain text), chat (the model's chat template), "
                              "alpaca-chat (the Alpaca text as a user turn in the chat template: PoliTune's official recipe)")
    load_in_4bit: bool = Field(False, description="dpo/sft: QLoRA, the base model in 4-bit NF4 (GPU with the gpu extra)")
    max_chars: int | None = Field(None, ge=1, description="dpo/sft: drop pairs longer than this many characters (PoliTune's recipe: 1024)")
    progress: bool = Field(True, description="show progress")
    student: Literal["bow", "cnn", "hf"] = Field("bow", description="distill: bag-of-words, Kim CNN, or a Hugging Face classifier (--model)")
    distill_mode: Literal["baseline", "distill", "tempered"] = Field(
        "distill", description="distill: hard labels, alpha*KL+(1-alpha)*CE on label_0/label_1, or T^2*KL")
    alpha: float = Field(0.9, ge=0, le=1, description="distill: weight of the teacher term")
    temperature: float = Field(2.0, gt=0, description="distill (tempered): softmax temperature of the student")
    vocab_size: int = Field(10000, ge=2, description="distill (bow/cnn): vocabulary ids, UNK included")
