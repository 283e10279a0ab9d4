"""Fine-tune a causal LM with LoRA on Ray Train (``TorchTrainer``): the SubPOP opinion objectives.

Each worker loads the model, adds a LoRA adapter, wraps it for DDP (Ray's
``prepare_model``) or FSDP2 (our own ``fully_shard``: Ray's FSDP path refuses
CPU, and the same code must run in CPU tests and on GPU clusters), trains on
its shard of the prepared set (a ``DistributedSampler``), validates every
epoch and reports a checkpoint (adapter + optimiser + scheduler state) to Ray
Train. A failed worker group restarts from the last checkpoint
(``FailureConfig``), and running the same job again with the same ``out``
resumes where it stopped. Rank 0 writes TensorBoard logs; the driver copies the
best adapter (lowest validation loss) to ``OUT/adapter``.

    demoscope train --objective opinion-kl --model tiny:llama \\
        --train-file runs/prepare/opnqa_QA_train.parquet --val-file runs/prepare/opnqa_QA_val.parquet
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from demoscope.config import save_config
from demoscope.config.train import TrainConfig
from demoscope.errors import ConfigError
from demoscope.io import atomic_dir, atomic_write_text
from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.runtime import check_resources, init_ray
from demoscope.pipelines.train_distill import distill_loop
from demoscope.pipelines.train_preference import preference_loop
from demoscope.pipelines.train_progress import STEP_EVERY, ProgressPump, worker_settings
from demoscope.pipelines.train_runs import (
    check_previous_run,
    clear_previous_run,
    fit_interruptibly,
    interrupted_message,
    tidy_storage,
)
from demoscope.training.progress import ProgressClock, epoch_record, epoch_summary, step_record

DESCRIPTION = """\
Train on Ray Train (DDP, or FSDP), one objective per run:
  opinion-kl / opinion-wd  LoRA on a causal LM to predict survey answer distributions
                           (SubPOP): the next-token distribution after "Answer:" over the
                           letters " A".." J", fitted by forward KL or ordinal Wasserstein;
  dpo / sft                LoRA through TRL's DPOTrainer / SFTTrainer (PoliTune);
  distill                  a student classifier (--student bow|cnn|hf) on text,label
                           [,label_0,label_1]: hard labels (distill_mode=baseline),
                           alpha*KL(teacher||student)+(1-alpha)*CE, or T^2*KL (tempered).

reads   prepared splits from `demoscope prepare` (columns input_prompt, output_dist, ordinal);
        dpo/sft: prompt, chosen, rejected; distill: text, label (+ label_0, label_1)
writes  OUT/adapter (best LoRA adapter, PEFT format; distill: OUT/student), OUT/metrics.json (per epoch),
        OUT/tensorboard/ (tensorboard --logdir OUT/tensorboard), OUT/ray/ (checkpoints),
        OUT/config.yaml. Re-running with the same OUT and settings (epochs may grow under
        the step schedule) resumes from the last checkpoint; other settings are refused,
        --restart starts over. Ctrl-C keeps the registered checkpoints: re-run to resume.

example demoscope train --objective opinion-kl --model tiny:llama --num-workers 2 \\
            --train-file runs/prepare/opnqa_QA_train.parquet --val-file runs/prepare/opnqa_QA_val.parquet \\
            --out runs/train epochs=3 lora.r=8
        demoscope train --objective distill --student cnn --train-file runs/distill/soft_labels.parquet \\
            --out runs/cnn-distilled alpha=0.9
        presets: demoscope train --config configs/subpop/llama-2-7b.yaml (GPU cluster)
"""


def train_loop(cfg: dict) -> None:
    """The per-worker training function (runs inside a Ray Train worker)."""
    import ray.train
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict
    from torch.utils.data import DataLoader, DistributedSampler

    from demoscope.models import load_causal_lm
    from demoscope.models.names import resolve_model
    from demoscope.training.lora import apply_lora
    from demoscope.training.opinion_data import OpinionDataset, collate, label_token_ids, read_prepared
    from demoscope.training.opinion_loop import train_epoch, validate
    from demoscope.training.resume import load_trainer_state, scheduler_position
    from demoscope.training.schedules import make_scheduler

    settings, send = worker_settings(cfg)
    config = TrainConfig.model_validate(settings)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(config.seed)
    bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    model, tokenizer = load_causal_lm(resolve_model(config.model), dtype="bfloat16" if bf16 else "float32", device=str(device))
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
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=partial(collate, pad_id=tokenizer.pad_token_id))

    train_loader = loader(config.train_file, config.batch_size, shuffle=True)
    val_loader = loader(config.val_file, config.val_batch_size, shuffle=False) if config.val_file else None
    wrapped = _wrap(model, config.strategy, device, bf16)
    optimizer = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_loader) / config.grad_accum)
    scheduler = make_scheduler(optimizer, config.scheduler, steps_per_epoch, config.epochs, config.gamma, config.warmup_ratio,
                               config.warmup_steps)
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

        def log_step(step: int, metrics: dict[str, float]) -> None:
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
                _unwrap(wrapped).save_pretrained(Path(folder) / "adapter", state_dict=model_state)
                torch.save({"model": model_state, "optim": optim_state, "scheduler": scheduler.state_dict(),
                            "epoch": epoch, "best": best}, Path(folder) / "trainer_state.pt")
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        else:
            ray.train.report(metrics)
        if send:  # after the report, so a printed epoch is one that Ray Train has registered
            send(epoch_record(clock, config.epochs, metrics, step0 + steps_per_epoch))
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
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    layer_names = set(getattr(_base(model), "_no_split_modules", None) or [])
    for module in model.modules():
        if type(module).__name__ in layer_names:
            fully_shard(module, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def _epoch_line(m: dict) -> str:
    """An epoch of metrics.json as one line (epochs as metrics.json numbers them)."""
    return f"epoch {m['epoch']:g}: {epoch_summary(m)}"


def resolve(config: TrainConfig) -> TrainConfig:
    """Check a config before anything starts, and pin its paths (workers may run elsewhere)."""
    if not config.train_file:
        raise ConfigError("no training data: give --train-file (a split written by `demoscope prepare`)")
    for path in filter(None, [config.train_file, config.val_file]):
        hub_name = config.objective in ("dpo", "sft") and path.count("/") == 1 and not Path(path).suffix
        if not Path(path).exists() and not hub_name:
            raise ConfigError(f"training file {path} does not exist")
    if config.init_adapter and config.objective not in ("opinion-kl", "opinion-wd"):
        raise ConfigError(f"--init-adapter applies to the opinion objectives, not {config.objective}")
    if config.init_adapter and not (Path(config.init_adapter) / "adapter_config.json").exists():
        raise ConfigError(f"--init-adapter {config.init_adapter} is not a LoRA adapter folder (no adapter_config.json)")
    if config.objective in ("dpo", "sft") and config.strategy == "fsdp" and not config.use_gpu:
        raise ConfigError("--strategy fsdp for dpo/sft shards through accelerate, which supports FSDP only on GPUs; "
                          "on CPU workers use --strategy ddp (or --use-gpu on a GPU cluster)")
    if config.objective in ("opinion-kl", "opinion-wd"):
        from demoscope.surveys.finetuning import read_split

        for path in filter(None, [config.train_file, config.val_file]):
            read_split(path)  # a bad row fails here, named, before Ray starts
    return config.model_copy(update={
        "out": str(Path(config.out).resolve()),
        "train_file": str(Path(config.train_file).resolve()) if Path(config.train_file).exists() else config.train_file,
        "val_file": str(Path(config.val_file).resolve()) if config.val_file and Path(config.val_file).exists() else config.val_file,
        "init_adapter": str(Path(config.init_adapter).resolve()) if config.init_adapter else None,
    })


def build_trainer(config: TrainConfig, callbacks: list | None = None, progress: ProgressPump | None = None):
    """The ``TorchTrainer`` for a resolved config.

    ``callbacks`` are Ray Train callbacks (e.g. Tune's reporter); with
    ``progress`` the workers send their progress records to its queue.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from demoscope.models.names import resolve_model

    resolve_model(config.model)  # build the tiny model once here, not in every worker at once
    preference = config.objective in ("dpo", "sft")
    loop = {"dpo": preference_loop, "sft": preference_loop, "distill": distill_loop}.get(config.objective, train_loop)
    settings = config.model_dump(mode="json")
    return TorchTrainer(
        loop,
        train_loop_config=progress.loop_config(settings) if progress else settings,
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu),
        run_config=RunConfig(
            name="train",
            storage_path=config.storage_path or str(Path(config.out) / "ray"),
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(
                checkpoint_score_attribute=None if preference else "val_loss", checkpoint_score_order="min"),
            callbacks=callbacks,
        ),
    )


def export_result(result, config: TrainConfig) -> tuple[dict, list[dict]]:
    """Copy the best checkpoint's adapter to OUT/adapter and write OUT/metrics.json; returns (best, history)."""
    out = Path(config.out)
    preference = config.objective in ("dpo", "sft")
    # After a restart an epoch can be reported twice; the later report (in registration order) wins.
    by_epoch = {metrics["epoch"]: metrics for _, metrics in result.best_checkpoints}
    history = [by_epoch[epoch] for epoch in sorted(by_epoch)]
    score = "val_loss" if not preference else ("eval_loss" if config.val_file else None)
    best_checkpoint, best_metrics = (min(result.best_checkpoints, key=lambda cm: cm[1][score]) if score
                                     else result.best_checkpoints[-1])
    with best_checkpoint.as_directory() as folder:
        if config.objective == "distill":
            _replace_dir(Path(folder) / "student", out / "student")
        else:
            source = Path(folder) / "adapter" if not preference else Path(folder) / "checkpoint"
            _replace_dir(source, out / "adapter", keep=("adapter_config.json", "adapter_model.safetensors") if preference else None)
    atomic_write_text(out / "metrics.json", json.dumps({"best": best_metrics, "epochs": history}, indent=2))
    return best_metrics, history


@dataclass(frozen=True)
class TrainResult:
    """What a training run leaves: its folder, the exported best artifact, and the metrics by epoch."""

    out: Path
    artifact: Path  # OUT/adapter (opinion, dpo, sft) or OUT/student (distill)
    best: dict  # the best epoch's metrics (as OUT/metrics.json "best")
    history: list[dict]


def run(config: TrainConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope train`` command: :func:`train`, exit code 0 (errors raise)."""
    train(config, address, verbose)
    return 0


def train(config: TrainConfig, address: str | None = None, verbose: bool = False) -> TrainResult:
    """Launch the TorchTrainer, then export the best adapter and the metrics; the Python API of ``demoscope train``.

    Into an ``out`` that holds a run, the same settings resume it and others
    are refused (:func:`check_previous_run`); ``restart`` removes that run
    first. Ctrl-C stops the workers and raises ``KeyboardInterrupt`` whose
    message says what ``out`` keeps and how to resume. Composite jobs, Tune
    trials and notebooks call this and read the result, not the files.
    """
    config = resolve(config)
    out = Path(config.out)
    resuming = False if config.restart else check_previous_run(config, out)
    init_ray(address, verbose)
    check_resources("train", config.num_workers, config.use_gpu)
    from rich.console import Console

    console = Console(soft_wrap=True)  # soft_wrap: long lines (paths) wrap instead of being cut at the width
    if config.restart:  # only now: a run refused above (settings, resources) leaves the earlier one in place
        removed = clear_previous_run(config)
        if removed:
            console.print(f"--restart: removed the earlier run in {out} ({', '.join(removed)})", markup=False)
    if resuming:
        console.print(f"{out} holds an earlier run with the same settings: resuming it from its last checkpoint",
                      markup=False)
    where = f"{config.num_workers} {'GPU' if config.use_gpu else 'CPU'} workers, {config.strategy.upper()}"
    console.print(f"training {config.model} ({config.objective}) on Ray Train: {where}; progress below and in "
                  f"{out / 'progress.jsonl'}; curves: tensorboard --logdir {out / 'tensorboard'}", markup=False)
    # Written after the checks, so it never names settings other than those of the checkpoints beside it, and
    # before fit, so that an interrupted run keeps it for the next run's comparison. restart is an action on
    # this folder, not a setting: the same command from this file must resume, not wipe.
    save_config(config.model_copy(update={"restart": False}), out / "config.yaml")
    try:
        with ProgressPump(out / "progress.jsonl") as progress:
            result = fit_interruptibly(build_trainer(config, progress=progress))
    except KeyboardInterrupt:
        raise KeyboardInterrupt(interrupted_message(config, tidy_storage(config, resuming))) from None
    except BaseException:
        tidy_storage(config, resuming)
        raise
    tidy_storage(config, resuming)
    best_metrics, history = export_result(result, config)
    if not progress.printer.shown:  # nothing came through live (e.g. every epoch was done before a re-run)
        for metrics in history:
            console.print(_epoch_line(metrics), markup=False)
    artifact = out / ("student" if config.objective == "distill" else "adapter")
    console.print(f"best epoch {best_metrics['epoch']}; {artifact.name} -> {artifact}")
    return TrainResult(out, artifact, best_metrics, history)


def _replace_dir(source: Path, target: Path, keep: tuple[str, ...] | None = None) -> None:
    """Copy a folder (or only the ``keep`` files of it) into place atomically."""
    with atomic_dir(target) as staging:
        if keep:
            for name in keep:
                shutil.copy2(source / name, staging / name)
        else:
            shutil.copytree(source, staging, dirs_exist_ok=True)


JOB = Job(name="train", description=DESCRIPTION, config=TrainConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
