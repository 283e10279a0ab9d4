"""The train job on a real local Ray: DDP and FSDP workers, checkpoints, resume, a killed worker."""

import json
import os
import signal
import threading
import time

import psutil
import pytest
import torch
from safetensors.torch import load_file

from demoscope.errors import ConfigError
from demoscope.pipelines import train as train_job
from demoscope.pipelines.train_distill import DistillTrainConfig
from demoscope.pipelines.train_opinion import OpinionTrainConfig
from demoscope.pipelines.train_preference import PreferenceTrainConfig

pytestmark = pytest.mark.ray


def config(prepared, out, **overrides) -> OpinionTrainConfig:
    settings = dict(model="tiny:llama", train_file=str(prepared["train"]), val_file=str(prepared["val"]), out=str(out),
                    epochs=2, lr=5e-3, batch_size=16, val_batch_size=32, num_workers=2, seed=3)
    settings.update(overrides)
    return OpinionTrainConfig(**settings)


def adapter_weights(folder):
    return load_file(str(folder / "adapter_model.safetensors"))


def run_watching_output(cfg, capsys, monkeypatch) -> tuple[str, str]:
    """Run the train job; returns (what it printed by the time fit() returned, everything it printed)."""
    seen = {}
    real_build = train_job.build_trainer

    def build(*args, **kwargs):
        trainer = real_build(*args, **kwargs)
        real_fit = trainer.fit

        def fit():
            result = real_fit()
            seen["during_fit"] = capsys.readouterr().out
            return result

        trainer.fit = fit
        return trainer

    monkeypatch.setattr(train_job, "build_trainer", build)
    assert train_job.run(cfg) == 0
    return seen["during_fit"], seen["during_fit"] + capsys.readouterr().out


def epoch_lines(printed: str) -> dict[str, str]:
    """Progress lines of finished epochs, keyed by their "k/N" label."""
    return {line.split()[1]: line for line in printed.splitlines() if line.startswith("epoch ") and " done: " in line}


def test_ddp_training_writes_best_adapter_metrics_and_tensorboard(local_ray, prepared, tmp_path, capsys, monkeypatch):
    during_fit, printed = run_watching_output(config(prepared, tmp_path / "ddp"), capsys, monkeypatch)
    out = tmp_path / "ddp"
    metrics = json.loads((out / "metrics.json").read_text())
    # Progress while fit() runs: the first step and the first epoch, before fit() returns.
    assert any(line.startswith("epoch 1/2  step 1/") and "ETA" in line for line in during_fit.splitlines())
    assert "1/2" in epoch_lines(during_fit)
    lines = epoch_lines(printed)
    assert sorted(lines) == ["1/2", "2/2"]
    for epoch in metrics["epochs"]:  # each line shows the numbers metrics.json keeps for that epoch
        line = lines[f"{epoch['epoch'] + 1}/2"]
        assert f"train kl {epoch['train_kl']:.4f}" in line and f"val kl {epoch['val_kl']:.4f}" in line
        assert "elapsed" in line and "ETA" in line
    logged = [json.loads(row) for row in (out / "progress.jsonl").read_text().splitlines()]
    assert [r["metrics"]["epoch"] for r in logged if r["kind"] == "epoch"] == [0, 1]
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]
    assert metrics["best"]["val_loss"] == min(e["val_loss"] for e in metrics["epochs"])
    assert metrics["epochs"][-1]["train_kl"] < metrics["epochs"][0]["train_kl"]
    weights = adapter_weights(out / "adapter")
    assert any("lora_B" in k for k in weights) and all(torch.isfinite(v).all() for v in weights.values())
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)  # B starts at zero: it trained
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "config.yaml").exists()


def test_training_continues_from_an_init_adapter(local_ray, prepared, random_adapter, tmp_path):
    """--init-adapter starts from a trained adapter (GradEx verifies from its meta-trained one), not a fresh one."""
    out = tmp_path / "continued"
    assert train_job.run(config(prepared, out, init_adapter=str(random_adapter), epochs=1, lr=1e-6, num_workers=1)) == 0
    start, end = adapter_weights(random_adapter), adapter_weights(out / "adapter")
    assert start.keys() == end.keys()
    for name, weight in start.items():  # a fresh adapter has B = 0; a 1e-6 step barely moves the given one
        assert torch.allclose(end[name], weight, atol=1e-4), name
    assert any("lora_B" in k and w.abs().max() > 0.1 for k, w in end.items())


def test_bad_init_adapter_is_refused_before_ray_starts(prepared, tmp_path):
    from demoscope.errors import ConfigError

    with pytest.raises(ConfigError, match="not a LoRA adapter folder"):
        train_job.resolve(config(prepared, tmp_path / "out", init_adapter="nowhere"))
    # Only the opinion recipe continues an adapter: the preference recipe's config has no such setting.
    with pytest.raises(ConfigError, match=r"unknown config key 'init_adapter' for PreferenceTrainConfig"):
        train_job.train_config({"objective": "dpo", "train_file": str(prepared["train"]),
                                "init_adapter": str(tmp_path)})


class _WritesAFile:
    """Unpickling this writes a file: what a trainer_state.pt planted in the storage path could do in every worker."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (type(self.target).write_text, (self.target, "ran"))


# ~90 s of four Ray Train runs; the default run stays under 10 minutes
# (tests/pipelines/test_train_rerun.py checks the refusal rules without training)
@pytest.mark.slow
def test_reruns_resume_only_the_same_run_never_load_code_and_restart_on_request(local_ray, prepared, tmp_path):
    out = tmp_path / "rerun"
    assert train_job.run(config(prepared, out, epochs=1)) == 0
    saved = (out / "config.yaml").read_text()
    # Another rank, rate or data would continue the r=8 run (or die in the workers): refused before Ray, config kept.
    with pytest.raises(ConfigError, match=r"lora.r 8 -> 4.*--restart"):
        train_job.run(config(prepared, out, epochs=1, lora={"r": 4}))
    with pytest.raises(ConfigError, match=r"train_file .*opnqa_QA_val.parquet'.*lr 0.005 -> 0.01"):
        train_job.run(config(prepared, out, epochs=2, lr=1e-2, train_file=str(prepared["val"])))
    assert (out / "config.yaml").read_text() == saved
    # More epochs under the step schedule continue the same run from its checkpoint (loaded as data only).
    assert train_job.run(config(prepared, out, epochs=2)) == 0
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert epochs[0]["resumed_from_epoch"] == -1 and epochs[1]["resumed_from_epoch"] == 0
    # A planted trainer_state.pt is refused in the worker, and its code never runs.
    storage = out / "ray" / "train"
    latest = json.loads((storage / "checkpoint_manager_snapshot.json").read_text())["latest_checkpoint_result"]
    marker = tmp_path / "marker"
    torch.save({"model": {}, "epoch": _WritesAFile(marker)},
               storage / latest["checkpoint_dir_name"] / "trainer_state.pt")
    with pytest.raises(Exception) as failure:
        train_job.run(config(prepared, out, epochs=3, max_failures=0))
    assert not marker.exists()
    assert "not loaded" in str(failure.value) or "UnsafeCheckpointError" in str(failure.value)
    # --restart starts over: a fresh first epoch, nothing resumed, the new settings saved without the flag.
    assert train_job.run(config(prepared, out, epochs=1, lr=1e-2, restart=True)) == 0
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [(e["epoch"], e["resumed_from_epoch"]) for e in epochs] == [(0, -1)]
    assert "lr: 0.01" in (out / "config.yaml").read_text() and "restart: false" in (out / "config.yaml").read_text()


@pytest.mark.slow  # ~20 s; test_fsdp_trainer_arguments_make_a_valid_fsdp2_config checks the FSDP settings by default
def test_fsdp_training_runs_on_cpu_workers(local_ray, prepared, tmp_path):
    out = tmp_path / "fsdp"
    assert train_job.run(config(prepared, out, strategy="fsdp", epochs=1)) == 0
    weights = adapter_weights(out / "adapter")
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)


def _train_workers():
    """Processes hosting a Ray Train worker actor (idle pooled processes are titled ray::IDLE)."""
    return [p for p in psutil.process_iter(["cmdline"]) if "ray::RayTrainWorker" in " ".join(p.info["cmdline"] or [])]


def _registered_checkpoint(storage) -> bool:
    snapshot = storage / "checkpoint_manager_snapshot.json"
    try:
        return json.loads(snapshot.read_text()).get("latest_checkpoint_result") is not None
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or caught mid-write
        return False


@pytest.mark.slow  # ~60 s: Ray Train's own fault tolerance; the re-run test covers resuming in the default set
def test_killed_worker_resumes_from_the_last_checkpoint_and_finishes(local_ray, prepared, tmp_path):
    out = tmp_path / "killed"
    cfg = config(prepared, out, epochs=12, max_failures=3)  # many short epochs: the kill lands mid-run
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("code", train_job.run(cfg)))
    runner.start()
    storage = out / "ray" / "train"
    deadline = time.time() + 240
    # An uploaded checkpoint only counts once the controller has registered it, which it records in
    # its snapshot file; killing before that (a busy CI machine) would restart from scratch.
    while not _registered_checkpoint(storage) and time.time() < deadline and runner.is_alive():
        time.sleep(0.1)
    assert _registered_checkpoint(storage), "no checkpoint was registered before the run ended"
    victims = _train_workers()
    assert victims, "found no Ray Train worker process to kill"
    victims[-1].kill()
    runner.join(timeout=300)
    assert outcome.get("code") == 0
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == list(range(12))
    assert any(e["resumed_from_epoch"] >= 0 for e in epochs), "no epoch ran after a restart from a checkpoint"


def test_ctrl_c_stops_training_says_what_remains_and_restores_the_handler(local_ray, prepared, tmp_path):
    """Ray Train's own SIGINT handler would let fit() return (and the job export a partial result) and stay installed.

    The interrupt's message is what the CLI prints: what OUT keeps and that the same command resumes. A checkpoint
    folder Ray Train never registered (an upload the interrupt cut short, planted here) is removed.
    """
    out = tmp_path / "interrupted"
    cfg = config(prepared, out, epochs=60, num_workers=1)
    before = signal.getsignal(signal.SIGINT)
    storage = out / "ray" / "train"
    stray = storage / "checkpoint_2000-01-01_00-00-00.000000"

    def interrupt_once_a_checkpoint_is_registered():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not _registered_checkpoint(storage):
            time.sleep(0.05)
        stray.mkdir()
        (stray / "trainer_state.pt").write_bytes(b"cut short")
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_a_checkpoint_is_registered, daemon=True).start()
    with pytest.raises(KeyboardInterrupt) as interrupt:
        train_job.run(cfg)
    assert _registered_checkpoint(storage), "the interrupt came before the first checkpoint"
    assert signal.getsignal(signal.SIGINT) is before
    assert not (out / "metrics.json").exists() and not (out / "adapter").exists()
    message = str(interrupt.value)
    assert message.startswith(f"interrupted; {out} keeps ") and " checkpoint" in message and str(storage) in message
    assert "config.yaml" in message and "progress.jsonl" in message and "tensorboard/" in message
    assert "the same command again resumes" in message and "--restart" in message
    snapshot = json.loads((storage / "checkpoint_manager_snapshot.json").read_text())
    registered = {r["checkpoint_dir_name"] for r in snapshot["checkpoint_results"]}
    assert not stray.exists() and {p.name for p in storage.glob("checkpoint_*") if p.is_dir()} == registered
    assert train_job.check_previous_run(train_job.resolve(cfg), out) is True  # the same command resumes


@pytest.mark.parametrize("objective", ["dpo", pytest.param("sft", marks=pytest.mark.slow)])
def test_preference_objectives_train_on_ray_workers(local_ray, tmp_path, objective, capsys, monkeypatch):
    from demoscope.training.preference_data import synthetic_preferences

    synthetic_preferences(48, "right", seed=0).to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    synthetic_preferences(8, "right", seed=1).to_json(tmp_path / "val.jsonl", orient="records", lines=True)
    out = tmp_path / objective
    cfg = PreferenceTrainConfig(objective=objective, model="tiny:llama", train_file=str(tmp_path / "train.jsonl"),
                                val_file=str(tmp_path / "val.jsonl"), out=str(out), epochs=2, lr=2e-3, batch_size=4,
                                num_workers=2)
    _, printed = run_watching_output(cfg, capsys, monkeypatch)
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert len(epochs) == 2 and epochs[-1]["eval_loss"] < epochs[0]["eval_loss"]
    lines = epoch_lines(printed)
    assert sorted(lines) == ["1/2", "2/2"]
    for epoch in epochs:
        assert f"eval_loss {epoch['eval_loss']:.4f}" in lines[f"{epoch['epoch']:g}/2"]
    assert epochs[0]["fsdp_units"] == 0 and epochs[0]["resumed_from_step"] == -1  # DDP, fresh start
    if objective == "dpo":
        assert epochs[-1]["rewards/accuracies"] >= 0.8 and epochs[-1]["rewards/margins"] > 0
    assert any(w.abs().sum() > 0 for k, w in adapter_weights(out / "adapter").items() if "lora_B" in k)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def _preference_config(tmp_path, objective="dpo", **overrides) -> PreferenceTrainConfig:
    from demoscope.training.preference_data import synthetic_preferences

    if not (tmp_path / "train.jsonl").exists():
        synthetic_preferences(32, "left", seed=0).to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    settings = dict(objective=objective, model="tiny:llama", train_file=str(tmp_path / "train.jsonl"),
                    out=str(tmp_path / objective), epochs=1, lr=2e-3, batch_size=4, num_workers=2)
    return PreferenceTrainConfig(**{**settings, **overrides})


@pytest.mark.slow
def test_dpo_rerun_with_more_epochs_is_another_run(local_ray, tmp_path):
    """TRL's schedule (linear or cosine) spans every epoch: more epochs would change every step's rate."""
    assert train_job.run(_preference_config(tmp_path, epochs=1)) == 0
    epochs = json.loads((tmp_path / "dpo" / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1.0] and epochs[0]["step"] == 4  # 32 pairs / (4 per worker x 2 workers)
    with pytest.raises(ConfigError, match=r"epochs 1 -> 2.*--restart"):
        train_job.run(_preference_config(tmp_path, epochs=2))


def test_fsdp_for_preference_objectives_is_refused_on_cpu_with_a_reason(tmp_path):
    from demoscope.errors import ConfigError

    with pytest.raises(ConfigError, match="FSDP only on GPUs"):
        train_job.run(_preference_config(tmp_path, strategy="fsdp"))


def test_fsdp_trainer_arguments_make_a_valid_fsdp2_config(tmp_path):
    """The GPU path's FSDP settings, checked through TRL's own config class on CPU."""
    from trl import DPOConfig

    from demoscope.models import load_causal_lm
    from demoscope.models.names import resolve_model
    from demoscope.pipelines.train_preference import trainer_arguments

    model, _ = load_causal_lm(resolve_model("tiny:llama"), device="cpu")
    extra = trainer_arguments(_preference_config(tmp_path, strategy="fsdp", gradient_checkpointing=True), model)
    assert "gradient_checkpointing" not in extra  # FSDP checkpoints activations itself
    args = DPOConfig(output_dir=str(tmp_path / "t"), use_cpu=True, bf16=False, report_to="none", **extra)
    plugin = args.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"
    assert plugin["activation_checkpointing"] is True and plugin["reshard_after_forward"] is True
    ddp = trainer_arguments(_preference_config(tmp_path, gradient_checkpointing=True), model)
    assert "fsdp" not in ddp and ddp["gradient_checkpointing"] is True


def test_warmup_steps_reach_trls_scheduler_as_a_step_count(tmp_path):
    """PoliTune's 100 warm-up steps: an int reaches transformers as a count, a ratio stays a ratio."""
    from transformers import TrainingArguments

    from demoscope.models import load_causal_lm
    from demoscope.models.names import resolve_model
    from demoscope.pipelines.train_preference import trainer_arguments

    model, _ = load_causal_lm(resolve_model("tiny:llama"), device="cpu")
    for settings, steps in (({"warmup_steps": 100}, 100), ({"warmup_ratio": 0.1}, 12)):
        extra = trainer_arguments(_preference_config(tmp_path, **settings), model)
        args = TrainingArguments(output_dir=str(tmp_path / "t"), use_cpu=True, report_to="none", **extra)
        assert args.get_warmup_steps(112) == steps  # the left set: 112 optimiser steps


@pytest.mark.parametrize("mode", [pytest.param("baseline", marks=pytest.mark.slow), "distill"])
def test_distillation_students_train_on_ray_workers(local_ray, tmp_path, mode, capsys, monkeypatch):
    import numpy as np

    from demoscope.bias import synthetic_sentiment
    from demoscope.distill import load_student, positive_probability

    frame = synthetic_sentiment(400, seed=0, bias="none")
    smooth = np.where(frame["label"] == 1, 0.8, 0.2)
    frame = frame.assign(label_0=1 - smooth, label_1=smooth)
    frame.iloc[:320].to_parquet(tmp_path / "train.parquet")
    frame.iloc[320:].to_parquet(tmp_path / "val.parquet")
    out = tmp_path / mode
    cfg = DistillTrainConfig(student="bow", distill_mode=mode, train_file=str(tmp_path / "train.parquet"),
                             val_file=str(tmp_path / "val.parquet"), out=str(out), epochs=4, lr=5e-3, batch_size=16,
                             num_workers=2)
    _, printed = run_watching_output(cfg, capsys, monkeypatch)
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2, 3] and epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    lines = epoch_lines(printed)
    assert sorted(lines) == ["1/4", "2/4", "3/4", "4/4"]
    for epoch in epochs:
        assert f"train loss {epoch['train_loss']:.4f}" in lines[f"{epoch['epoch'] + 1}/4"]
    student = load_student(out / "student")
    val = frame.iloc[320:]
    accuracy = ((positive_probability(student, val["text"].tolist()) > 0.5) == val["label"].to_numpy()).mean()
    assert accuracy > 0.7
    best = json.loads((out / "metrics.json").read_text())["best"]
    assert best["val_accuracy"] == pytest.approx(accuracy, abs=1e-9)  # the exported student is the best epoch's
