"""Hyperparameter sweeps of a training job on Ray Tune: one Ray Train run per trial.

    demoscope sweep --base configs/tiny-demo.yaml --space configs/sweeps/opinion-lr-rank.yaml \\
        --scheduler asha --num-samples 4 --out runs/sweep
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from demoscope.config import SweepConfig, save_config
from demoscope.config.loading import check_keys, merge_settings, parse_overrides, read_yaml
from demoscope.config.train import TrainConfig
from demoscope.errors import ConfigError
from demoscope.io import atomic_write
from demoscope.pipelines.command import Job, main_for
from demoscope.pipelines.runtime import init_ray

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
            --set val_file=runs/demo/prepare/opnqa_QA_val.parquet --space configs/sweeps/opinion-lr-rank.yaml \\
            --scheduler asha --num-samples 2 --out runs/sweep
        a re-run with the same --out resumes an interrupted sweep.
"""


def _base_settings(config: SweepConfig) -> dict:
    """The train config every trial starts from (training part of a YAML like configs/tiny-demo.yaml allowed)."""
    data = read_yaml(config.base) if config.base else {}
    data = data.get("train", data)  # the demo config nests its training settings under `train`
    return merge_settings(data, parse_overrides(config.set))


def _trial(params: dict, base: dict, out: str) -> None:
    """One Tune trial: a Ray Train run of the train job with this trial's settings."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from demoscope.pipelines import train as train_job
    from demoscope.tune.space import trial_settings

    trial_out = Path(out) / "trials" / tune.get_context().get_trial_id()
    config = train_job.resolve(TrainConfig.model_validate({**merge_settings(base, trial_settings(params)), "out": str(trial_out)}))
    save_config(config, trial_out / "config.yaml")
    result = train_job.build_trainer(config, callbacks=[TuneReportCallback()]).fit()
    train_job.export_result(result, config)


def _check(config: SweepConfig, base: dict, space: dict) -> TrainConfig:
    """Fail before Ray starts: unknown keys anywhere, or a base config that does not validate."""
    from demoscope.tune.space import trial_settings

    check_keys(TrainConfig, base)
    check_keys(TrainConfig, trial_settings({k: None for k in space}))
    probe = {**base, "out": str(Path(config.out) / "probe")}
    try:
        return TrainConfig.model_validate(probe)
    except Exception as error:  # noqa: BLE001 - pydantic's message, with the sweep named
        raise ConfigError(f"sweep base config is not a valid train config: {error}") from None


def run(config: SweepConfig, address: str | None = None, verbose: bool = False) -> int:
    """Run (or resume) the sweep, then export the best trial and a table of all trials."""
    from demoscope.tune.space import load_space

    base = _base_settings(config)
    space = load_space(config.space)
    probe = _check(config, base, space)
    metric = config.metric or ("eval_loss" if probe.objective in ("dpo", "sft") else "val_loss")
    out = Path(config.out).resolve()
    save_config(config, out / "config.yaml")
    init_ray(address, verbose)
    from ray import tune
    from ray.tune import RunConfig, TuneConfig
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator
    from rich.console import Console

    trainable = tune.with_parameters(_trial, base=base, out=str(out))
    # The trial only waits on its Train run, whose workers hold the CPUs (Tune refuses a bundle of 0).
    trainable = tune.with_resources(trainable, {"cpu": 0.01})
    scheduler = (ASHAScheduler(time_attr="training_iteration", grace_period=config.grace_period,
                               reduction_factor=config.reduction_factor, max_t=max(probe.epochs, config.grace_period) + 1)  # +1: ASHA stops a trial at max_t
                 if config.scheduler == "asha" else FIFOScheduler())
    experiment = out / "tune" / "sweep"
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=TuneConfig(metric=metric, mode=config.mode, num_samples=config.num_samples, scheduler=scheduler,
                                   search_alg=BasicVariantGenerator(random_state=config.seed),
                                   max_concurrent_trials=config.max_concurrent_trials),
            run_config=RunConfig(name="sweep", storage_path=str(out / "tune"), verbose=1 if verbose else 0),
        )
    console = Console(soft_wrap=True)
    with console.status(f"sweeping {len(space)} setting(s) of `{config.job}`: watch with tensorboard --logdir {out / 'trials'}"):
        results = tuner.fit()
    return _export(results, metric, config.mode, out, console)


def _export(results, metric: str, mode: str, out: Path, console) -> int:
    """Write OUT/trials.csv and export the best reported epoch of any trial to OUT/best.

    The best epoch is read from every trial's reports (ASHA may have stopped
    the trial that holds it), and its adapter from the checkpoint that report
    names, so stopped trials count too.
    """
    table = results.get_dataframe()
    keep = [c for c in table.columns if c.startswith("config/") or c in ("trial_id", metric, "training_iteration", "epoch")]
    table = table[keep].rename(columns=lambda c: c.removeprefix("config/"))
    atomic_write(out / "trials.csv", lambda tmp: table.to_csv(tmp, index=False))
    reports = [r.metrics_dataframe.assign(trial_id=r.metrics["trial_id"]) for r in results
               if r.metrics_dataframe is not None and metric in r.metrics_dataframe]
    reports = [frame.dropna(subset=[metric, "checkpoint_path"]) for frame in reports if "checkpoint_path" in frame]
    if not reports or all(frame.empty for frame in reports):
        errors = [str(r.error) for r in results if r.error]
        raise ConfigError(f"no trial reported {metric!r} with a checkpoint; first error: {errors[0] if errors else 'none'}")
    import pandas as pd

    every = pd.concat(reports, ignore_index=True)
    best = every.sort_values(metric, ascending=mode == "min").iloc[0]
    trial = out / "trials" / str(best["trial_id"])
    checkpoint = Path(best["checkpoint_path"])
    staging = out / ".best.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if (checkpoint / "adapter").exists():  # the opinion trainer's checkpoint
        shutil.copytree(checkpoint / "adapter", staging / "adapter")
    else:  # a TRL Trainer checkpoint: keep the adapter files only
        (staging / "adapter").mkdir()
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(checkpoint / "checkpoint" / name, staging / "adapter" / name)
    shutil.copy2(trial / "config.yaml", staging / "config.yaml")
    history = every[every["trial_id"] == best["trial_id"]]
    (staging / "metrics.json").write_text(json.dumps(
        {"best": _plain(best.to_dict()), "epochs": [_plain(r) for r in history.to_dict(orient="records")]}, indent=2))
    shutil.rmtree(out / "best", ignore_errors=True)
    staging.rename(out / "best")
    console.print(table.to_string(index=False))
    console.print(f"best: trial {best['trial_id']}, epoch {best.get('epoch')}, {metric} {best[metric]:.4f} -> {out / 'best'}")
    return 0


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
