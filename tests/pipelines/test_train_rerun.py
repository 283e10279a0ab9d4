"""Re-running the train job into an OUT that holds a run, checked before Ray starts: resume, refuse, or --restart."""

import json
from pathlib import Path

import pytest

from demoscope.config import save_config
from demoscope.errors import ConfigError
from demoscope.pipelines import train as train_job
from demoscope.pipelines.train_opinion import OpinionTrainConfig
from demoscope.training.resume import SNAPSHOT


def config(tmp_path, **overrides) -> OpinionTrainConfig:
    (tmp_path / "train.parquet").touch()
    settings = dict(train_file=str(tmp_path / "train.parquet"), out=str(tmp_path / "out"), epochs=5, lr=1e-3)
    return OpinionTrainConfig(**{**settings, **overrides})


def earlier_run(cfg: OpinionTrainConfig, adapter_r: int = 8, config_yaml: bool = True):
    """OUT as a finished run leaves it: config.yaml, one registered checkpoint with its adapter, logs and exports."""
    out = Path(cfg.out)
    if config_yaml:
        save_config(cfg, out / "config.yaml")
    storage = out / "ray" / "train"
    (storage / "checkpoint_1" / "adapter").mkdir(parents=True)
    (storage / "checkpoint_1" / "adapter" / "adapter_config.json").write_text(json.dumps(
        {"r": adapter_r, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["v_proj", "q_proj"]}))
    result = {"checkpoint_dir_name": "checkpoint_1", "metrics": {"epoch": 4}}
    (storage / SNAPSHOT).write_text(json.dumps({"checkpoint_results": [result], "latest_checkpoint_result": result,
                                                "pending_training_results": []}))
    for name in ("tensorboard", "adapter"):
        (out / name).mkdir()
    (out / "metrics.json").write_text("{}")
    (out / "progress.jsonl").write_text("{}\n")
    return out


def test_changed_settings_are_refused_with_each_key_and_the_saved_config_is_left_alone(tmp_path, prepared):
    out = earlier_run(config(tmp_path, train_file=str(prepared["train"])))
    before = (out / "config.yaml").read_text()
    changed = config(tmp_path, epochs=7, lr=1e-2, train_file=str(prepared["val"]), scheduler="cosine")
    with pytest.raises(ConfigError) as refusal:
        train_job.run(changed)  # refused before Ray starts
    message = str(refusal.value)
    for shown in ("epochs 5 -> 7", "lr 0.001 -> 0.01", "train_file", "opnqa_QA_val.parquet",
                  "scheduler 'step' -> 'cosine'", "--restart"):
        assert shown in message
    assert (out / "config.yaml").read_text() == before


def test_same_settings_resume_and_epochs_may_grow_under_the_step_schedule(tmp_path):
    earlier_run(config(tmp_path))
    assert train_job.check_previous_run(config(tmp_path, max_failures=0), tmp_path / "out") is True
    assert train_job.check_previous_run(config(tmp_path, epochs=7), tmp_path / "out") is True


def test_a_lora_rank_other_than_the_checkpoints_is_refused_even_when_config_yaml_claims_it(tmp_path):
    """An older Demoscope rewrote config.yaml with lora.r=4 beside an r=8 run; resuming would die in the workers."""
    earlier_run(config(tmp_path, lora={"r": 4}), adapter_r=8)
    with pytest.raises(ConfigError, match=r"LoRA adapter with other settings \(lora.r 8 -> 4\).*--restart"):
        train_job.check_previous_run(config(tmp_path, lora={"r": 4}), tmp_path / "out")
    with pytest.raises(ConfigError, match=r"lora.r 4 -> 8"):  # and config.yaml's own claim is compared too
        train_job.check_previous_run(config(tmp_path), tmp_path / "out")


def test_checkpoints_without_a_config_are_refused_and_a_config_without_checkpoints_is_no_run(tmp_path):
    earlier_run(config(tmp_path), config_yaml=False)
    with pytest.raises(ConfigError, match="no config.yaml"):
        train_job.check_previous_run(config(tmp_path), tmp_path / "out")
    stopped_early = tmp_path / "early"
    save_config(config(tmp_path, out=str(stopped_early)), stopped_early / "config.yaml")  # stopped before a checkpoint
    assert train_job.check_previous_run(config(tmp_path, out=str(stopped_early), lr=0.5), stopped_early) is False


def test_restart_removes_the_earlier_run_and_nothing_else(tmp_path):
    out = earlier_run(config(tmp_path))
    (out / "notes.txt").write_text("mine")
    removed = train_job.clear_previous_run(config(tmp_path, lr=0.5, restart=True))
    assert sorted(removed) == sorted(["ray/train", "tensorboard", "progress.jsonl", "metrics.json", "adapter",
                                      "config.yaml"])
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert train_job.check_previous_run(config(tmp_path, lr=0.5), out) is False


def test_restart_is_a_flag_and_refuses_remote_checkpoints(tmp_path):
    from demoscope.pipelines.command import build_parser

    help_text = build_parser(train_job.JOB).format_help()
    assert "--restart" in help_text and "start over in OUT: remove its earlier run first" in help_text
    with pytest.raises(ConfigError, match="only local checkpoints"):
        train_job.clear_previous_run(config(tmp_path, storage_path="s3://bucket/runs", restart=True))
