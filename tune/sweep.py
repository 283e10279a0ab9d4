"""Hyperparameter sweeps of a training job on Ray Tune: one Ray Train run per trial.

    demoscope sweep --base configs/tiny-demo.yaml --space configs/sweeps/opinion-lr-rank.yaml \\
        --scheduler asha --num-samples 4 --out runs/sweep
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from demoscope.config import save_config
from demoscope.config.base import JobConfig
from demoscope.config.loading import (
    check_keys,
    merge_settings,
    parse_overrides,
    read_yaml,
)
from demoscope.errors import ConfigError
from demoscope.io import atomic_dir, atomic_write
from demoscope.pipelines import train as train_job
from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.runtime import check_resources, init_ray
from demoscope.pipelines.train_common import copy_artifact

if TYPE_CHECKING:
    import pandas as pd

SUMMARY = "hyperparameter sweeps of a training job on Ray Tune (grid, random, ASHA); best config exported"
DESCRIPTION = """\
Sweep a training job's settings with Ray Tune. Every trial is a full
`demoscope train` run on Ray Train (its own workers, checkpoints, TensorBoard
logs) that reports each epoch's metrics to Tune, so ASHA can stop poor trials
early and the Ray dashboard's Jobs/Tune views show them live. Grid axes
multiply --num-samples; other domains are sampled (seeded).

reads   --base (the job's YAML config) + --set key=value, and --space (YAML):
          lr: {loguniform: [1.0e-4, 1.0e-2]}
          lora.r: {grid: [4, 8]}
writes  OUT/trials/<trial id>/ (each trial's train outputs: adapter, metrics.json,
        tensorboard/), OUT/trials.csv (every trial's settings and last metrics),
        OUT/best/ (best trial's adapter, config.yaml, metrics.json), OUT/config.yaml
        watch: tensorboard --logdir OUT/trials; the Ray dashboard (ray start --head ...)

example demoscope sweep --base configs/tiny-demo.yaml --set train_file=runs/demo/prepare/opnqa_QA_train.parquet \\
            --set val_file=runs/demo/prepare/opnqa_QA_val.parquet --set num_workers=1 \\
            --space configs/sweeps/opinion-lr-rank.yaml --scheduler asha --num-samples 2 --out runs/sweep
        a re-run with the same --out resumes an interrupted sweep. Each trial holds its
        num_workers CPUs (GPUs with use_gpu=true); a trial that cannot fit is refused at once.
"""


# Train settings that name local files or folders. Tune runs each trial in its own folder,
# so the driver pins them to absolute paths before any trial sees them.
FILE_KEYS = ("train_file", "val_file", "model")  # may also be hub ids or tiny:llama: pinned only if they exist here
FOLDER_KEYS = ("init_adapter", "storage_path")  # always local paths (or URIs)
TRIAL_CPUS = 0.01  # the trial only waits on its Train run, whose workers hold the CPUs (Tune refuses a bundle of 0)


class SweepConfig(JobConfig):
    """``demoscope sweep``: a Ray Tune search over a training job's settings, one Ray Train run per trial."""

    job: Literal["train"] = Field("train", description="the training job to sweep")
    base: str | None = Field(None, description="the job's YAML config every trial starts from")
    set: list[str] = Field(default_factory=list, description="key=value settings on top of --base (repeatable)")
    space: str = Field(..., description="YAML search space: "
                       "KEY: {grid|choice: [..]} or {uniform|loguniform|randint: [lo, hi]}")
    num_samples: int = Field(1, ge=1, description="samples of the space (grid axes multiply it)")
    scheduler: Literal["fifo", "asha"] = Field("fifo", description="asha: stop poor trials early")
    grace_period: int = Field(1, ge=1, description="ASHA: epochs every trial gets before it can be stopped")
    reduction_factor: int = Field(2, ge=2, description="ASHA: keep 1/reduction_factor at each rung")
    metric: str | None = Field(None, description="metric to optimise (default val_loss; eval_loss for dpo/sft)")
    mode: Literal["min", "max"] = Field("min", description="minimise or maximise the metric")
    max_concurrent_trials: int = Field(1, ge=1, description="trials running at once (each uses num_workers CPUs/GPUs)")
    out: str = Field("runs/sweep", description="output folder")
    seed: int = Field(0, description="seed of the random search")


def _absolute(key: str, value):
    """``value`` as an absolute path where ``key`` names a local path; hub ids, URIs and non-strings as given."""
    if not isinstance(value, str) or not value or "://" in value:
        return value
    if key in FOLDER_KEYS or (key in FILE_KEYS and Path(value).exists()):
        return str(Path(value).resolve())
    return value


def _pin_paths(settings: dict) -> dict:
    """Train settings (or a flat search space) with every local path made absolute, grid/choice lists included."""
    pinned = {}
    for key, value in settings.items():
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("grid", "choice"):
            kind, values = next(iter(value.items()))
            pinned[key] = {kind: [_absolute(key, v) for v in values]}
        else:
            pinned[key] = _absolute(key, value)
    return pinned


def _base_settings(config: SweepConfig) -> dict:
    """The train config every trial starts from (training part of a YAML like configs/tiny-demo.yaml allowed)."""
    data = read_yaml(config.base) if config.base else {}
    data = data.get("train", data)  # the demo config nests its training settings under `train`
    return _pin_paths(merge_settings(data, parse_overrides(config.set)))


def _trial(params: dict, base: dict, out: str) -> None:
    """One Tune trial: a Ray Train run of the train job with this trial's settings."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from demoscope.pipelines import train as train_job
    from demoscope.tune.space import trial_settings

    trial_out = Path(out) / "trials" / tune.get_context().get_trial_id()
    settings = {**merge_settings(base, trial_settings(params)), "out": str(trial_out)}
    config = train_job.resolve(train_job.train_config(settings))
    save_config(config, trial_out / "config.yaml")
    result = train_job.build_trainer(config, callbacks=[TuneReportCallback()]).fit()
    train_job.export_result(result, config)


def _check(config: SweepConfig, base: dict, space: dict):
    """Fail before Ray starts: unknown keys anywhere, or a base config that does not validate (the probe config)."""
    from demoscope.pipelines import train as train_job
    from demoscope.tune.space import trial_settings

    if "objective" in space:
        raise ConfigError("the space sweeps objective, but each objective has its own settings: sweep one at a time")
    model = train_job.config_class(base.get("objective"))
    check_keys(model, base)
    check_keys(model, trial_settings({k: None for k in space}))
    try:
        probe = train_job.train_config({**base, "out": str(Path(config.out) / "probe")})
    except ConfigError as error:
        raise ConfigError(f"sweep base config is not a valid train config: {error}") from None
    if not {"train_file", "val_file", "init_adapter"} & set(space):
        train_job.resolve(probe)  # missing files fail here, once, not in every trial
    return probe


def _largest_workers(probe, space: dict) -> int:
    """The most Ray Train workers any trial asks for (num_workers may itself be swept)."""
    spec = space.get("num_workers", probe.num_workers)
    if isinstance(spec, dict):
        values = next(iter(spec.values()))
        return int(max(values))
    return int(spec)


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: every trial's settings and metric, and the best epoch of any trial, exported."""

    out: Path
    trials: pd.DataFrame  # trial_id, the swept settings, the metric, training_iteration (as OUT/trials.csv)
    best: dict  # the best reported epoch's metrics (with trial_id)
    artifact: Path  # OUT/best/adapter (or OUT/best/student)
    config: Path  # OUT/best/config.yaml: the best trial's full train config, runnable with demoscope train --config


def run(config: SweepConfig, address: str | None = None, verbose: bool = False) -> int:
    """The ``demoscope sweep`` command: :func:`sweep`, exit code 0."""
    sweep(config, address, verbose)
    return 0


def sweep(config: SweepConfig, address: str | None = None, verbose: bool = False) -> SweepResult:
    """Run (or resume) the sweep, then export the best trial and a table of all trials; the Python API."""
    from demoscope.tune.space import read_space, to_domains

    base = _base_settings(config)
    space = _pin_paths(read_space(config.space))  # checked without importing Ray: init_ray sets its environment first
    probe = _check(config, base, space)
    metric = config.metric or ("eval_loss" if probe.objective in ("dpo", "sft") else "val_loss")
    out = Path(config.out).resolve()
    save_config(config, out / "config.yaml")
    init_ray(address, verbose)
    # Each trial holds TRIAL_CPUS and its Train run's workers; one trial must fit, or Tune waits forever.
    check_resources("sweep", _largest_workers(probe, space), probe.use_gpu, extra_cpus=TRIAL_CPUS, unit="each trial")
    space = to_domains(space)
    from ray import tune
    from ray.tune import RunConfig, TuneConfig
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from rich.console import Console

    trainable = tune.with_parameters(_trial, base=base, out=str(out))
    trainable = tune.with_resources(trainable, {"cpu": TRIAL_CPUS})
    scheduler = (ASHAScheduler(time_attr="training_iteration", grace_period=config.grace_period,
                               reduction_factor=config.reduction_factor,
                               max_t=max(probe.epochs, config.grace_period) + 1)  # +1: ASHA stops a trial at max_t
                 if config.scheduler == "asha" else FIFOScheduler())
    experiment = out / "tune" / "sweep"
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=TuneConfig(metric=metric, mode=config.mode, num_samples=config.num_samples, scheduler=scheduler,
                                   search_alg=search_alg(config)),
            run_config=RunConfig(name="sweep", storage_path=str(out / "tune"), verbose=1 if verbose else 0),
        )
    console = Console(soft_wrap=True)
    with console.status(f"sweeping {len(space)} setting(s) of `{config.job}`: "
                        f"watch with tensorboard --logdir {out / 'trials'}"):
        results = tuner.fit()
    return _export(results, metric, config.mode, out, probe.objective, console)


def search_alg(config: SweepConfig):
    """Tune's variant generator, seeded, running at most ``max_concurrent_trials`` trials at once.

    Tune ignores ``TuneConfig.max_concurrent_trials`` when it is handed its own
    generator, so the limit is set on the generator itself.
    """
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=config.seed, max_concurrent=config.max_concurrent_trials)


def _export(results, metric: str, mode: str, out: Path, objective: str, console) -> SweepResult:
    """Write OUT/trials.csv and export the best reported epoch of any trial to OUT/best.

    The best epoch is read from every trial's reports (ASHA may have stopped
    the trial that holds it), and its adapter from the checkpoint that report
    names, so stopped trials count too.
    """
    table = results.get_dataframe()
    keep = [c for c in table.columns
            if c.startswith("config/") or c in ("trial_id", metric, "training_iteration", "epoch")]
    table = table[keep].rename(columns=lambda c: c.removeprefix("config/"))
    atomic_write(out / "trials.csv", lambda tmp: table.to_csv(tmp, index=False))
    reports = [r.metrics_dataframe.assign(trial_id=r.metrics["trial_id"]) for r in results
               if r.metrics_dataframe is not None and metric in r.metrics_dataframe]
    reports = [frame.dropna(subset=[metric, "checkpoint_path"]) for frame in reports if "checkpoint_path" in frame]
    if not reports or all(frame.empty for frame in reports):
        errors = [str(r.error) for r in results if r.error]
        raise ConfigError(f"no trial reported {metric!r} with a checkpoint; "
                          f"first error: {errors[0] if errors else 'none'}")
    import pandas as pd

    every = pd.concat(reports, ignore_index=True)
    best = every.sort_values(metric, ascending=mode == "min").iloc[0]
    trial = out / "trials" / str(best["trial_id"])
    checkpoint = Path(best["checkpoint_path"])
    history = every[every["trial_id"] == best["trial_id"]]
    recipe = train_job.recipe_for(objective)
    best_metrics = _plain(best.to_dict())
    with atomic_dir(out / "best") as staging:
        copy_artifact(recipe, checkpoint, staging / recipe.artifact)
        shutil.copy2(trial / "config.yaml", staging / "config.yaml")
        (staging / "metrics.json").write_text(json.dumps(
            {"best": best_metrics, "epochs": [_plain(r) for r in history.to_dict(orient="records")]}, indent=2))
    console.print(table.to_string(index=False))
    console.print(f"best: trial {best['trial_id']}, epoch {best.get('epoch')}, "
                  f"{metric} {best[metric]:.4f} -> {out / 'best'}")
    return SweepResult(out, table, best_metrics, out / "best" / recipe.artifact, out / "best" / "config.yaml")


def _plain(record: dict) -> dict:
    """JSON-safe values (numpy scalars to Python, NaN to None)."""
    import math

    out = {}
    for key, value in record.items():
        value = value.item() if hasattr(value, "item") else value
        out[key] = None if isinstance(value, float) and math.isnan(value) else value
    return out


JOB = Job(name="sweep", description=DESCRIPTION, config=SweepConfig, run=run)


def main(argv: list[str] | None = None) -> int:
    return main_for(JOB, argv)


if __name__ == "__main__":
    sys.exit(main())
