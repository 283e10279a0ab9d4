"""Sweeps: the search-space vocabulary, and a real Ray Tune sweep of the train job on the local Ray."""

import json

import pandas as pd
import pytest
import yaml

from demoscope.errors import ConfigError
from demoscope.tune import sweep as sweep_job
from demoscope.tune.space import load_space, trial_settings
from demoscope.tune.sweep import SweepConfig


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_space_vocabulary_becomes_tune_domains(tmp_path):
    from ray.tune.search.sample import Categorical, Float, Integer

    space = load_space(write(tmp_path / "s.yaml", {
        "lr": {"loguniform": [1e-4, 1e-2]}, "lora.r": {"grid": [4, 8]}, "batch_size": {"choice": [8, 16]},
        "warmup_ratio": {"uniform": [0.0, 0.2]}, "seed": {"randint": [0, 10]}, "epochs": 3}))
    assert isinstance(space["lr"], Float) and space["lr"].lower == 1e-4
    assert space["lora.r"] == {"grid_search": [4, 8]}
    assert isinstance(space["batch_size"], Categorical) and isinstance(space["seed"], Integer)
    assert space["epochs"] == 3
    assert trial_settings({"lora.r": 8, "lr": 0.01}) == {"lora": {"r": 8}, "lr": 0.01}


@pytest.mark.parametrize("spec, message", [
    ({"lr": {"normal": [0, 1]}}, "key 'lr': expected one of"),
    ({"lr": {"loguniform": [0, 1]}}, "0 < low < high"),
    ({"lr": {"uniform": [1]}}, "needs \\[low, high\\]"),
    ({"lora.r": {"grid": []}}, "non-empty list"),
])
def test_bad_space_entries_name_the_key(tmp_path, spec, message):
    with pytest.raises(ConfigError, match=message):
        load_space(write(tmp_path / "s.yaml", spec))


def test_unknown_keys_fail_before_ray_starts(tmp_path, prepared):
    space = write(tmp_path / "s.yaml", {"learning_rate": {"grid": [0.1]}})
    config = SweepConfig(space=str(space), set=[f"train_file={prepared['train']}"], out=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        sweep_job.run(config)


@pytest.mark.ray
@pytest.mark.slow  # ~50 s; test_sweep_limits.py runs a sweep on Ray Tune in the default set
def test_asha_sweep_runs_one_train_run_per_trial_and_exports_the_best(local_ray, prepared, tmp_path):
    space = write(tmp_path / "space.yaml", {"lr": {"grid": [1e-4, 5e-3]}})
    out = tmp_path / "sweep"
    config = SweepConfig(base="configs/tiny-demo.yaml", space=str(space), scheduler="asha", grace_period=1,
                         set=[f"train_file={prepared['train']}", f"val_file={prepared['val']}", "epochs=2",
                              "num_workers=1", "batch_size=16"], out=str(out))
    result = sweep_job.sweep(config)
    trials = pd.read_csv(out / "trials.csv")
    assert sorted(trials["lr"]) == [1e-4, 5e-3] and trials["val_loss"].notna().all()
    best = json.loads((out / "best" / "metrics.json").read_text())["best"]
    reported = pd.concat([pd.read_csv(p) for p in (out / "tune" / "sweep").glob("*/progress.csv")])
    assert best["val_loss"] == pytest.approx(reported["val_loss"].min())
    assert (out / "best" / "adapter" / "adapter_model.safetensors").exists()
    assert result.best == best and result.artifact == out.resolve() / "best" / "adapter"
    best_lr = yaml.safe_load((out / "best" / "config.yaml").read_text())["lr"]
    assert best_lr == trials.set_index("trial_id").loc[best["trial_id"], "lr"]
    for trial in trials.itertuples():
        assert list((out / "trials" / trial.trial_id / "tensorboard").glob("events.out.tfevents.*"))
