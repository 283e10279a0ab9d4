"""Sweeps honour their concurrency limit, refuse trials that cannot fit, and run from a plain shell."""

import os
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from demoscope.errors import ConfigError
from demoscope.tune import sweep as sweep_job
from demoscope.tune.sweep import SweepConfig

pytestmark = pytest.mark.ray


def _timed_trial(params: dict) -> dict:
    """A trial that only records when it ran."""
    start = time.time()
    time.sleep(1.0)
    return {"start": start, "end": time.time()}


def test_max_concurrent_trials_is_honoured_with_the_seeded_generator(local_ray, tmp_path):
    from ray import tune

    config = SweepConfig(space="unused.yaml", max_concurrent_trials=1, out=str(tmp_path))
    # Each trial asks almost nothing, so without the limit all three would run at once on 2 CPUs.
    tuner = tune.Tuner(
        tune.with_resources(_timed_trial, {"cpu": sweep_job.TRIAL_CPUS}),
        param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(search_alg=sweep_job.search_alg(config)),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0),
    )
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in tuner.fit())
    assert len(spans) == 3
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))  # no two trials overlap


def test_a_trial_bigger_than_the_local_ray_is_refused_at_once_with_what_fits(local_ray, prepared, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"lr": {"grid": [1e-3, 1e-2]}}))
    config = SweepConfig(space=str(space), set=[f"train_file={prepared['train']}", "num_workers=2"],
                         out=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match=r"each trial asks 2\.01 CPUs \(num_workers=2 x 1 CPU \+ 0\.01\); "
                                          r"this Ray has 2; use num_workers=1 or --address a bigger cluster"):
        sweep_job.run(config)


def test_relative_paths_are_pinned_in_the_driver(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.parquet").touch()
    pinned = sweep_job._pin_paths({"train_file": "data/train.parquet", "model": "tiny:llama", "init_adapter": "a",
                                   "val_file": {"grid": ["data/train.parquet", "org/hub-set"]}, "lr": 0.1})
    assert pinned == {"train_file": str(tmp_path / "data" / "train.parquet"), "model": "tiny:llama",
                      "init_adapter": str(tmp_path / "a"), "lr": 0.1,
                      "val_file": {"grid": [str(tmp_path / "data" / "train.parquet"), "org/hub-set"]}}


@pytest.mark.slow  # about a minute: its own Ray, then two one-epoch Train runs one after the other
def test_sweep_runs_from_a_plain_shell_with_relative_paths(prepared, tmp_path):
    (tmp_path / "data").mkdir()
    for name in ("train", "val"):
        shutil.copy(prepared[name], tmp_path / "data" / f"{name}.parquet")
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"lr": {"grid": [1e-3, 5e-3]}}))
    # A plain shell: no RAY_*, GLOO or HF variables; the job must set what Ray needs before importing it.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "USER")}
    command = [sys.executable, "-m", "demoscope.tune.sweep", "--space", "space.yaml",
               "--set", "train_file=data/train.parquet", "--set", "val_file=data/val.parquet",
               "--set", "num_workers=1", "--set", "epochs=1", "--set", "batch_size=16", "--out", "sweep"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    trials = pd.read_csv(tmp_path / "sweep" / "trials.csv")
    assert sorted(trials["lr"]) == [1e-3, 5e-3] and trials["val_loss"].notna().all()
    assert (tmp_path / "sweep" / "best" / "adapter" / "adapter_model.safetensors").exists()
