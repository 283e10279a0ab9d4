"""DPO and SFT on preference pairs through TRL 1.16 (PoliTune's method, TRL's trainers).

We *use* ``trl.DPOTrainer`` and ``trl.SFTTrainer``; this module only turns a
``prompt, chosen, rejected`` frame (see :mod:`demoscope.training.preference_data`)
and our :class:`LoraSettings` into their datasets and configs, with defaults
that suit both a CPU test on the tiny model and a GPU run:

* activation (gradient) checkpointing OFF: TRL 1.16 turns it on by default and
  it only costs time on small models; pass ``extra={"activation_checkpointing":
  True}`` (Transformers 5.24's name; ``gradient_checkpointing`` is its
  deprecated alias and is translated);
* ``save_strategy="no"``, ``logging_steps=1``, ``report_to="none"``;
* ``use_cpu=True`` and no bf16 without CUDA (TRL defaults bf16 to on).

PoliTune's official hyperparameters (lr 5e-4, beta 0.1, wd 0.05, cosine with
100 warm-up steps, batch 4 x grad-accum 16, 4 epochs) go through the arguments
and ``extra`` (any other ``DPOConfig`` / ``SFTConfig`` field).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from demoscope.errors import ConfigError
from demoscope.training.lora import LoraSettings
from demoscope.training.progress import ProgressClock, Send, epoch_record, step_record

# The DPO metric names TRL 1.16 logs (``DPOTrainer._compute_loss``), plus the loss.
DPO_METRICS = ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")


def peft_config(lora: LoraSettings):
    """Our :class:`LoraSettings` as a ``peft.LoraConfig`` for TRL's ``peft_config=`` (causal LM, no bias)."""
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules), task_type="CAUSAL_LM", bias="none",
    )


def _common_args(
    output_dir: str | Path, lr: float, epochs: float, batch_size: int, max_length: int, seed: int,
    max_steps: int, report_to: str | list[str],
) -> dict[str, Any]:
    """Fields shared by ``DPOConfig`` and ``SFTConfig`` (both ``TrainingArguments`` subclasses)."""
    import torch

    cuda = torch.cuda.is_available()
    return dict(
        output_dir=str(output_dir), learning_rate=lr, num_train_epochs=epochs,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
        max_length=max_length, seed=seed, data_seed=seed, max_steps=max_steps, report_to=report_to,
        # The new name: setting the deprecated ``gradient_checkpointing`` (as TRL's default does) warns.
        activation_checkpointing=False, save_strategy="no", logging_steps=1,
        use_cpu=not cuda,
        # TRL defaults bf16 to True; CPU runs (and pre-Ampere GPUs) must train in fp32.
        bf16=cuda and torch.cuda.is_bf16_supported(),
    )


def _build_config(config_cls, args: dict[str, Any], extra: dict[str, Any] | None):
    """Instantiate a TRL config, letting ``extra`` override or add fields; unknown fields are a ConfigError."""
    extra = dict(extra or {})
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
        if old in extra:  # otherwise our activation_checkpointing=False would silently win over the alias
            extra.setdefault(new, extra.pop(old))
    merged = {**args, **extra}
    try:
        return config_cls(**merged)
    except TypeError as error:  # an unknown keyword in ``extra``
        raise ConfigError(f"{config_cls.__name__}: {error}") from error


def _check_lora(model, lora: LoraSettings | None) -> None:
    """Refuse a second adapter on a model that already has one: TRL would stack them silently."""
    if lora is not None and hasattr(model, "peft_config"):
        raise ConfigError("the model already carries a PEFT adapter; pass lora=None to train that adapter")


def train_dpo(
    model, tokenizer, train: pd.DataFrame, output_dir: str | Path, lora: LoraSettings | None,
    beta: float = 0.1, lr: float = 5e-4, epochs: float = 1, batch_size: int = 4, max_length: int = 512,
    seed: int = 0, max_steps: int = -1, report_to: str | list[str] = "none", callbacks: list | None = None,
    extra: dict[str, Any] | None = None, eval_data: pd.DataFrame | None = None, resume_from: str | None = None,
):
    """Train ``model`` with TRL's sigmoid DPO on ``train`` and return the ``trl.DPOTrainer`` after ``.train()``.

    ``train`` (and the optional ``eval_data``, passed as ``eval_dataset`` so that
    ``trainer.evaluate()`` works) has string columns ``prompt, chosen,
    rejected``, prompts already rendered (``format_prompts``). TRL appends EOS
    to each answer and scores only the answer tokens. With ``lora`` a fresh
    LoRA adapter is trained and, since ``ref_model=None``, TRL computes the
    reference log-probs with the same network's adapters disabled, as the
    official PoliTune recipe does; at step 0 (LoRA B = 0) policy == reference
    and the loss is log 2. With ``lora=None`` and a ``PeftModel``, TRL copies
    its adapter to a frozen ``ref`` adapter; with a plain model, TRL builds a
    full reference copy. ``extra`` holds any other ``DPOConfig`` field.
    Logged metrics: see :func:`preference_metrics`.
    """
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    _check_lora(model, lora)
    config = _build_config(
        DPOConfig, {**_common_args(output_dir, lr, epochs, batch_size, max_length, seed, max_steps, report_to),
                    "beta": beta}, extra,
    )
    trainer = DPOTrainer(
        model=model, ref_model=None, args=config,
        train_dataset=Dataset.from_pandas(train.loc[:, ["prompt", "chosen", "rejected"]], preserve_index=False),
        eval_dataset=None if eval_data is None else Dataset.from_pandas(
            eval_data.loc[:, ["prompt", "chosen", "rejected"]], preserve_index=False),
        processing_class=tokenizer, callbacks=callbacks,
        peft_config=None if lora is None else peft_config(lora),
    )
    trainer.train(resume_from_checkpoint=resume_from)  # a Trainer checkpoint folder, or None
    return trainer


def run_facts(resumed_from_step: int = -1):
    """A ``TrainerCallback`` that logs how the run actually ran, once, at its first epoch.

    ``fsdp_units`` counts the FSDP2-sharded modules (0 under DDP; the Trainer
    shards inside ``train()``, after ``on_train_begin``), and
    ``resumed_from_step`` is the global step of the checkpoint it continued
    from (-1 for a fresh start), as the opinion trainer's ``resumed_from_epoch``.
    """
    from transformers import TrainerCallback

    class _RunFacts(TrainerCallback):
        logged = False

        def on_epoch_begin(self, args, state, control, model=None, **kwargs):
            from torch.distributed.fsdp import FSDPModule

            if not self.logged and model is not None:
                units = sum(isinstance(m, FSDPModule) for m in model.modules())
                state.log_history.append({"fsdp_units": units, "resumed_from_step": resumed_from_step})
                self.logged = True

    return _RunFacts()



def progress_callback(send: Send, summary: Callable[[dict], str], every: float = 10.0):
    """A ``TrainerCallback`` that hands progress records (:mod:`demoscope.training.progress`) to ``send``.

    Only the main process sends: a ``step`` record from the first logged
    loss, then at most one every ``every`` seconds, and an ``epoch`` record per
    epoch carrying the last training log merged with the epoch's evaluation
    (sent when the evaluation is logged, or at the epoch's end without one),
    worded by ``summary``.
    """
    import math

    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        clock: ProgressClock | None = None
        last: dict[str, float] = {}

        def on_train_begin(self, args, state, control, **kwargs):
            # A resumed Trainer has loaded its state by now, so the ETA counts this run's steps only.
            self.clock = ProgressClock(state.max_steps, done_before=state.global_step, every=every)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or self.clock is None or not logs:
                return
            if "loss" in logs:
                self.last = dict(logs)
                if self.clock.due():
                    per_epoch = max(1, math.ceil(state.max_steps / max(state.num_train_epochs, 1)))
                    index = min(max(0, math.ceil(state.epoch or 0) - 1), max(state.num_train_epochs, 1) - 1)
                    send(step_record(self.clock, index, state.num_train_epochs, state.global_step - index * per_epoch,
                                     per_epoch, logs["loss"], state.global_step))
            if "eval_loss" in logs:
                self._send_epoch(state, {**self.last, **logs})

        def on_epoch_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero and self.clock is not None and args.eval_strategy == "no":
                self._send_epoch(state, self.last)

        def _send_epoch(self, state, logs: dict[str, float]) -> None:
            metrics = {**logs, "epoch": float(round(state.epoch or 0, 2)), "step": state.global_step}
            send(epoch_record(self.clock, state.num_train_epochs, metrics, state.global_step, summary(metrics)))

    return _Progress()


def _sft_dataset(frame: pd.DataFrame):
    """``prompt, chosen`` -> TRL's prompt-completion format (``prompt``, ``completion``)."""
    from datasets import Dataset

    return Dataset.from_pandas(
        frame.loc[:, ["prompt", "chosen"]].rename(columns={"chosen": "completion"}), preserve_index=False,
    )


def train_sft(
    model, tokenizer, train: pd.DataFrame, output_dir: str | Path, lora: LoraSettings | None,
    lr: float = 3e-4, epochs: float = 1, batch_size: int = 8, max_length: int = 512, seed: int = 0,
    max_steps: int = -1, report_to: str | list[str] = "none", callbacks: list | None = None,
    extra: dict[str, Any] | None = None, eval_data: pd.DataFrame | None = None, resume_from: str | None = None,
):
    """Supervised fine-tuning on ``prompt + chosen``; returns the ``trl.SFTTrainer`` after ``.train()``.

    The frame is given to TRL as a prompt-completion dataset (``completion`` =
    ``chosen``), for which TRL 1.16's ``completion_only_loss=None`` default
    computes the loss on the answer tokens only (set
    ``extra={"completion_only_loss": False}`` to train on the prompt too). The
    ``rejected`` column, if any, is ignored. ``eval_data`` becomes ``eval_dataset``.
    Defaults follow PoliTune's SFT YAML (lr 3e-4, batch 8); ``extra`` holds any
    other ``SFTConfig`` field.
    """
    from trl import SFTConfig, SFTTrainer

    _check_lora(model, lora)
    config = _build_config(
        SFTConfig, _common_args(output_dir, lr, epochs, batch_size, max_length, seed, max_steps, report_to), extra,
    )
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=_sft_dataset(train),
        eval_dataset=None if eval_data is None else _sft_dataset(eval_data),
        processing_class=tokenizer, callbacks=callbacks,
        peft_config=None if lora is None else peft_config(lora),
    )
    trainer.train(resume_from_checkpoint=resume_from)  # a Trainer checkpoint folder, or None
    return trainer


def preference_metrics(trainer) -> dict[str, list[float]]:
    """Per-logging-step training metrics from ``trainer.state.log_history``, keyed by TRL's names.

    Returns ``{"step": [...], "loss": [...], "rewards/margins": [...],
    "rewards/accuracies": [...], "rewards/chosen": [...], "rewards/rejected":
    [...]}`` for the training log entries (those with a ``loss``; the final
    ``train_loss`` summary entry is skipped), plus ``eval_*`` lists from any
    evaluation entries. The reward keys are absent for an SFT trainer. A
    logged value at step k is the mean over the batches since the last log.
    """
    out: dict[str, list[float]] = {}
    for entry in trainer.state.log_history:
        if "loss" in entry:
            out.setdefault("step", []).append(entry["step"])
            for key in DPO_METRICS:
                if key in entry:
                    out.setdefault(key, []).append(float(entry[key]))
        elif "eval_loss" in entry:
            out.setdefault("eval_step", []).append(entry["step"])
            for key in DPO_METRICS:
                if f"eval_{key}" in entry:
                    out.setdefault(f"eval_{key}", []).append(float(entry[f"eval_{key}"]))
    return out
