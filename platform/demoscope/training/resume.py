"""Resuming a training run in its output folder: which settings shape a run, which checkpoints count, safe state files.

A training job keeps Ray Train's checkpoints under ``OUT/ray/train/checkpoint_*``
and the settings that made them in ``OUT/config.yaml``; running the job into
the same folder again resumes from the latest checkpoint. That is right only
when the new settings describe the same run, so the job compares them first
(:func:`run_differences`, :func:`adapter_differences`). Ray Train records the
checkpoints it registered in ``checkpoint_manager_snapshot.json`` beside them;
a folder it never registered (an upload cut short by Ctrl-C or a dead worker)
is never resumed from and only misleads (:func:`remove_unregistered_checkpoints`).
Trainer state is read with ``torch.load(weights_only=True)``: a checkpoint is
data, and whoever can write the storage path must not be able to run code in
the workers (:func:`load_trainer_state`). Nothing here imports Ray.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

from demoscope.errors import DemoscopeError

SNAPSHOT = "checkpoint_manager_snapshot.json"

# Settings a resumed run may change without becoming another run:
#   max_failures  only how often Ray Train restarts the worker group;
#   progress      only what is printed;
#   restart       an action on OUT (always saved as false), not a setting;
#   out           where the folder is: Ray Train names checkpoints relative to it, so a moved OUT resumes;
#   gradient_checkpointing  recomputes activations instead of keeping them: the same gradients, less memory;
#   val_batch_size          how validation is batched: the same sums, up to rounding.
# Everything else shapes the run. num_workers does too: each worker draws its own shard and batch
# (DistributedSampler), so it sets the global batch, the optimiser steps per epoch and the schedule.
RESUME_FREE_FIELDS = frozenset({"max_failures", "restart", "out", "gradient_checkpointing", "val_batch_size"})

# LoRA settings as PEFT's adapter_config.json names them, keyed by our LoraSettings names.
_ADAPTER_KEYS = {"r": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "target_modules": "target_modules"}

# What a checkpoint's position in the schedule is; the rest of a scheduler's state (gamma, base
# rates, step size) follows from the config, which the job has checked is the same.
_SCHEDULER_POSITION = ("last_epoch", "_step_count", "_last_lr", "_is_initial", "_get_lr_called_within_step")


class UnsafeCheckpointError(DemoscopeError):
    """A checkpoint file holds Python objects beyond tensors and plain values, so it is not loaded."""


def run_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Settings (dotted keys for nested ones) that differ between a saved run's config and a new one: key -> (old, new).

    Fields in :data:`RESUME_FREE_FIELDS` are left out, and ``epochs`` may grow
    where the learning-rate schedule does not depend on the total number of
    epochs (the opinion objectives' ``step`` scheduler, distillation students):
    the run then continues with more epochs of the same schedule. Under
    ``cosine`` (and TRL's schedules for dpo/sft) the total sets every step's
    rate, so a changed ``epochs`` is another run.
    """
    old, new = _flat(saved), _flat(wanted)
    objective = new.get("objective")
    grows = objective == "distill" or (objective in ("opinion-kl", "opinion-wd") and new.get("scheduler") == "step")
    changed = {}
    for key, value in new.items():
        if key.split(".")[0] in RESUME_FREE_FIELDS or old.get(key) == value:
            continue
        if key == "epochs" and grows and isinstance(old.get(key), int) and value > old[key]:
            continue
        changed[key] = (old.get(key), value)
    return changed


def adapter_differences(adapter_config: dict[str, Any], wanted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """LoRA settings that differ between an adapter's ``adapter_config.json`` and ``wanted``:
    key -> (adapter's, wanted).

    ``wanted`` holds either our ``LoraSettings`` fields (``r``, ``alpha``,
    ``dropout``, ``target_modules``) or another ``adapter_config.json``.
    Target modules compare as sets (PEFT saves them unordered).
    """
    changed = {}
    for ours, peft in _ADAPTER_KEYS.items():
        have, want = adapter_config.get(peft), wanted.get(ours, wanted.get(peft))
        if ours == "target_modules" and have is not None and want is not None:
            have, want = sorted(have), sorted(want)
        if have != want:
            changed[ours] = (have, want)
    return changed


def registered_checkpoints(experiment: Path) -> list[str]:
    """Folder names of the checkpoints Ray Train registered in ``experiment``, the latest last; [] when none.

    An unreadable snapshot raises ``ValueError``: nothing about the folder
    can be trusted then, and Ray Train itself would refuse to resume from it.
    """
    path = Path(experiment) / SNAPSHOT
    if not path.is_file():
        return []
    try:
        snapshot = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not readable JSON ({exc})") from exc
    names = [r["checkpoint_dir_name"] for r in snapshot.get("checkpoint_results") or []]
    names += [r["checkpoint_dir_name"] for r in snapshot.get("pending_training_results") or []]
    latest = (snapshot.get("latest_checkpoint_result") or {}).get("checkpoint_dir_name")
    if latest:  # the list is ordered by score; the caller wants the one Ray Train resumes from last
        names = [name for name in names if name != latest] + [latest]
    return list(dict.fromkeys(names))


def latest_checkpoint_metrics(experiment: Path) -> dict[str, Any] | None:
    """The metrics Ray Train recorded with the latest registered checkpoint (what a resume starts after), or None."""
    path = Path(experiment) / SNAPSHOT
    if not path.is_file():
        return None
    latest = json.loads(path.read_text()).get("latest_checkpoint_result")
    return latest.get("metrics") if latest else None


def remove_unregistered_checkpoints(experiment: Path) -> list[str]:
    """Delete the ``checkpoint_*`` folders in ``experiment`` that Ray Train never registered; returns their names.

    Call it only when no run writes to ``experiment``. When the snapshot
    cannot be read nothing is deleted: better stray folders than lost ones.
    """
    experiment = Path(experiment)
    if not experiment.is_dir():
        return []
    try:
        keep = set(registered_checkpoints(experiment))
    except ValueError:
        return []
    removed = []
    for folder in sorted(experiment.glob("checkpoint_*")):
        if folder.is_dir() and folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def load_trainer_state(path: Path) -> dict[str, Any]:
    """Read a ``trainer_state.pt`` (tensors, numbers, strings, lists, dicts) without running any code from it.

    ``torch.load(weights_only=True)`` refuses every other pickled object; the
    refusal becomes an :class:`UnsafeCheckpointError` that names the file.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path} holds Python objects other than tensors and plain values, so it was not loaded: unpickling "
            f"them could run code. Checkpoints written by Demoscope never do; delete this one (or start over "
            f"with --restart). torch said: {str(exc).splitlines()[0]}") from exc


def scheduler_position(state: dict[str, Any]) -> dict[str, Any]:
    """The part of a saved ``scheduler.state_dict()`` that says where the schedule stands, for ``load_state_dict``.

    The scheduler itself is rebuilt from the config; loading only its position
    keeps a stale ``gamma`` or rate factor from an older file out of the run.
    """
    return {key: state[key] for key in _SCHEDULER_POSITION if key in state}


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys (``lora.r``), so a difference names the setting a user typed."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
