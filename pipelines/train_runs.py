"""A training run's output folder across runs: resume or refuse a re-run, restart, tidy, and Ctrl-C.

``demoscope train`` resumes from the checkpoints Ray Train registered under
OUT when the settings describe the same run, refuses other settings with the
keys that differ, clears the folder on ``--restart``, removes checkpoint
folders Ray never registered, and turns Ctrl-C into a ``KeyboardInterrupt``
that says what OUT keeps. The rules themselves (which settings shape a run,
which checkpoints count, safe state files) are in
:mod:`demoscope.training.resume`; this module applies them to a run's folder
and to Ray Train's ``fit()``.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
from pathlib import Path

from demoscope.errors import ConfigError
from demoscope.pipelines.train_common import TrainSettings
from demoscope.training.resume import (
    adapter_differences,
    latest_checkpoint_metrics,
    registered_checkpoints,
    remove_unregistered_checkpoints,
    run_differences,
)


def _experiment(config: TrainSettings) -> Path | None:
    """The folder of this job's Ray Train checkpoints (``RunConfig(name="train")``), or None when it is not local."""
    storage = config.storage_path or str(Path(config.out) / "ray")
    return None if "://" in storage else Path(storage) / "train"


def _registered(experiment: Path | None) -> list[str]:
    """Checkpoints Ray Train registered in ``experiment`` (the latest last); [] where it cannot be seen."""
    if experiment is None:
        return []
    try:
        return registered_checkpoints(experiment)
    except ValueError as exc:
        raise ConfigError(f"Ray Train's list of checkpoints is unreadable ({exc}); a run there cannot resume. "
                          f"Give a new --out, or --restart to start over") from exc


def check_previous_run(config: TrainSettings, out: Path) -> bool:
    """True when ``out`` holds an earlier run of the same settings (it resumes); refuse other settings.

    Ray Train resumes from the checkpoints under ``out``, so re-running into a
    folder that holds a run with another learning rate or data would silently
    continue that run instead of starting the one asked for. ``out`` holds a
    run when Ray Train registered a checkpoint there or a run finished there
    (``metrics.json``); a ``config.yaml`` with neither beside it belongs to a
    run stopped before its first checkpoint, and a new run replaces it. The
    comparison ignores the settings in ``RESUME_FREE_FIELDS`` (and lets epochs
    grow under a schedule that does not depend on them: see
    ``run_differences``). The last checkpoint's LoRA adapter must match the
    settings too: a config.yaml rewritten by an older Demoscope can claim
    another rank than the checkpoints have.
    """
    import yaml

    experiment = _experiment(config)
    checkpoints = _registered(experiment)
    saved_path = out / "config.yaml"
    finished = (out / "metrics.json").is_file()
    if not (checkpoints or finished or (experiment is None and saved_path.is_file())):
        return False
    restart = f"Give a new --out, or add --restart to start over in {out}"
    if not saved_path.is_file():
        raise ConfigError(f"{out} holds a training run but no config.yaml that says which settings made it, so "
                          f"resuming it could continue another run than the one asked for. {restart}")
    saved = yaml.safe_load(saved_path.read_text()) or {}
    changed = run_differences(saved, config.model_dump(mode="json"))
    if changed:
        shown = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changed.items())
        raise ConfigError(f"{out} already holds a training run with other settings ({shown}); running into it would "
                          f"resume that run. {restart}")
    if checkpoints:
        _check_checkpoint_adapter(config, experiment / checkpoints[-1], restart)
    return True


def _check_checkpoint_adapter(config: TrainSettings, checkpoint: Path, restart: str) -> None:
    """Refuse to resume a checkpoint whose LoRA adapter has other settings than the run asks for."""
    found = [checkpoint / kind / "adapter_config.json" for kind in ("adapter", "checkpoint")  # opinion, dpo/sft
             if (checkpoint / kind / "adapter_config.json").is_file()]
    if not found:  # distillation students carry no adapter
        return
    have = json.loads(found[0].read_text())
    init_adapter = getattr(config, "init_adapter", None)  # the opinion recipe's; dpo/sft always start fresh
    wanted = (json.loads((Path(init_adapter) / "adapter_config.json").read_text()) if init_adapter
              else config.lora.model_dump())
    changed = adapter_differences(have, wanted)
    if changed:
        shown = ", ".join(f"lora.{key} {old!r} -> {new!r}" for key, (old, new) in changed.items())
        raise ConfigError(f"the last checkpoint of the run in {config.out} holds a LoRA adapter with other settings "
                          f"({shown}) than this run asks for (its config.yaml does not describe it); resuming it "
                          f"would fail. {restart}")


def clear_previous_run(config: TrainSettings) -> list[str]:
    """``--restart``: remove what an earlier run left in ``out``, and nothing else there; returns the names removed.

    That is Ray Train's checkpoints of this job (``OUT/ray/train``, or
    ``train`` under a local ``storage_path``), the TensorBoard logs, the
    progress log, the exports and the saved config. Checkpoints on remote
    storage are refused rather than left behind to be resumed.
    """
    out = Path(config.out)
    experiment = _experiment(config)
    if experiment is None:
        raise ConfigError(f"--restart removes only local checkpoints; delete {config.storage_path}/train yourself, "
                          f"then run without --restart")
    removed = []
    for path in [experiment] + [out / name for name in _RUN_FILES]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(str(path.relative_to(out)) if path.is_relative_to(out) else str(path))
    default_storage = out / "ray"
    if not config.storage_path and default_storage.is_dir() and not any(default_storage.iterdir()):
        default_storage.rmdir()
    return removed


# What a run writes into OUT besides its checkpoints.
_RUN_FILES = ("tensorboard", "progress.jsonl", "metrics.json", "adapter", "student", "config.yaml")


def tidy_storage(config: TrainSettings, resumed: bool) -> list[str]:
    """After fit (finished, failed or interrupted): drop unregistered checkpoints; returns the registered ones.

    A checkpoint folder Ray Train never registered (an upload cut short) is
    never resumed from. A fresh run that registered nothing leaves no run, so
    its config.yaml goes too: it would describe settings no checkpoint has.
    """
    experiment = _experiment(config)
    if experiment is None:
        return []
    remove_unregistered_checkpoints(experiment)
    try:
        registered = registered_checkpoints(experiment)
    except ValueError:
        return []
    if not registered and not resumed and not (Path(config.out) / "metrics.json").exists():
        (Path(config.out) / "config.yaml").unlink(missing_ok=True)
    return registered


def interrupted_message(config: TrainSettings, registered: list[str]) -> str:
    """What Ctrl-C left in ``out`` and what running the command again does
    (the job's line, after "demoscope train: ").
    """
    out, experiment = Path(config.out), _experiment(config)
    kept = [name + ("/" if (out / name).is_dir() else "") for name in _RUN_FILES if (out / name).exists()]
    files = ", ".join(kept) if kept else "nothing"
    again = "Running the same command again resumes from the last checkpoint (add --restart to start over)"
    if experiment is None:  # remote storage: Ray Train's registry there is not ours to read
        return f"interrupted; {out} keeps {files}, and {config.storage_path}/train its checkpoints. {again}"
    if not registered:
        return (f"interrupted before the first checkpoint; {out} keeps {files}. Running the same command again "
                f"starts afresh")
    epoch = (latest_checkpoint_metrics(experiment) or {}).get("epoch")
    done = ""
    if isinstance(epoch, (int, float)):  # the opinion and distill loops count epochs from 0, TRL from 1 (in fractions)
        done = (f", the last at epoch {epoch:g}" if config.objective in ("dpo", "sft")
                else f", the last after epoch {epoch + 1}")
        done += f"/{config.epochs}"
    plural = "s" if len(registered) != 1 else ""
    besides = f", and {files}" if kept else ""
    return f"interrupted; {out} keeps {len(registered)} checkpoint{plural} in {experiment}{done}{besides}. {again}"


def fit_interruptibly(trainer):
    """``trainer.fit()``, where Ctrl-C stops the run and raises ``KeyboardInterrupt`` in the caller.

    Ray Train 2.60's ``fit()`` installs a SIGINT handler that aborts the run
    and lets ``fit()`` return as if it had finished (the job would then export
    a partial result), and never removes it, so later Ctrl-Cs in the same
    process (a test session) are swallowed. We give it our handler through its
    own hook instead: abort the controller (workers stop, checkpoints stay for
    a re-run), then raise. The caller's handler is restored when ``fit()`` ends.
    """
    if threading.current_thread() is not threading.main_thread():  # Tune trials: signals belong to the main thread
        return trainer.fit()
    previous = signal.getsignal(signal.SIGINT)
    previous = signal.default_int_handler if previous is None else previous  # None: set outside Python

    def register(controller) -> None:
        import ray

        def on_sigint(signum, frame) -> None:
            signal.signal(signal.SIGINT, previous)  # a second Ctrl-C during the abort acts at once
            try:
                ray.get(controller.abort.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - a controller already gone needs no abort; the interrupt still stands
                pass
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_sigint)

    trainer._register_sigint_handler = register
    try:
        return trainer.fit()
    finally:
        signal.signal(signal.SIGINT, previous)
