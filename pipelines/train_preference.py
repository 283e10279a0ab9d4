"""Ray Train worker loop for DPO / SFT through TRL (the ``dpo`` and ``sft`` objectives of ``demoscope train``)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from demoscope.config.train import TrainConfig
from demoscope.errors import ConfigError


def preference_loop(cfg: dict) -> None:
    """Per-worker DPO / SFT through TRL; Ray Train runs it and keeps the Trainer's checkpoints."""
    import ray.train
    from ray.train.huggingface.transformers import RayTrainReportCallback

    from demoscope.models import load_causal_lm
    from demoscope.models.names import resolve_model
    from demoscope.pipelines.train_progress import STEP_EVERY, worker_settings
    from demoscope.training.preference import progress_callback, run_facts, train_dpo, train_sft
    from demoscope.training.preference_data import prepare_pairs

    settings, send = worker_settings(cfg)
    config = TrainConfig.model_validate(settings)
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
                resume = shutil.copytree(Path(folder) / RayTrainReportCallback.CHECKPOINT_NAME, Path(staging) / "resume")
            resumed_step = json.loads((Path(resume) / "trainer_state.json").read_text())["global_step"]
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(config.out) / "tensorboard")  # transformers 5 reads it here
        callbacks = [run_facts(resumed_step), RayTrainReportCallback()]
        if send:
            callbacks.append(progress_callback(send, every=STEP_EVERY))
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


def trainer_arguments(config: TrainConfig, model) -> dict:
    """The ``DPOConfig`` / ``SFTConfig`` fields our TrainConfig sets beyond the basics.

    ``strategy="fsdp"`` becomes the Trainer's own FSDP2 (through accelerate),
    one unit per decoder layer, with FSDP's activation checkpointing in place of
    the Trainer's (the two together would all-gather twice). Accelerate only
    shards on accelerators, so :func:`run` refuses it for CPU workers.
    """
    # transformers 5 folds warmup_ratio into warmup_steps: a float below 1 is a ratio of the steps, an int a count.
    warmup = config.warmup_steps if config.warmup_steps is not None else config.warmup_ratio
    extra = {"save_strategy": "epoch", "weight_decay": config.weight_decay, "gradient_accumulation_steps": config.grad_accum,
             "lr_scheduler_type": "cosine" if config.scheduler == "cosine" else "linear", "warmup_steps": warmup}
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
