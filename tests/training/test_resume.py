"""Resume rules and safe checkpoint state: which settings shape a run, Ray Train's registry of checkpoints,
weights_only loads.
"""

import json
import math
import pickle

import pytest
import torch

from demoscope.pipelines.train import train_config
from demoscope.training.lora import LoraSettings
from demoscope.training.resume import (
    SNAPSHOT,
    UnsafeCheckpointError,
    adapter_differences,
    load_trainer_state,
    registered_checkpoints,
    remove_unregistered_checkpoints,
    run_differences,
    scheduler_position,
)
from demoscope.training.schedules import make_scheduler


def settings(**overrides) -> dict:
    return train_config({"train_file": "/data/train.parquet", **overrides}).model_dump(mode="json")


def test_differences_that_shape_a_run_are_listed_by_the_key_a_user_types():
    changed = run_differences(settings(), settings(lr=1e-2, train_file="/data/other.parquet", lora={"r": 4}))
    assert changed == {"lr": (1e-4, 1e-2), "train_file": ("/data/train.parquet", "/data/other.parquet"),
                       "lora.r": (8, 4)}


def test_settings_that_do_not_shape_a_run_may_change_on_resume():
    resumed = settings(max_failures=9, restart=True, out="/moved", gradient_checkpointing=True,
                       val_batch_size=3)
    assert run_differences(settings(), resumed) == {}
    assert run_differences(settings(), settings(num_workers=4)) == {"num_workers": (2, 4)}  # global batch, steps


def test_epochs_may_grow_only_where_the_schedule_ignores_the_total():
    assert run_differences(settings(epochs=5), settings(epochs=7)) == {}  # step: x gamma per epoch, whatever the total
    assert run_differences(settings(epochs=5), settings(epochs=3)) == {"epochs": (5, 3)}
    cosine = run_differences(settings(epochs=5, scheduler="cosine"), settings(epochs=7, scheduler="cosine"))
    assert cosine == {"epochs": (5, 7)}  # the total sets every step's rate
    assert run_differences(settings(objective="dpo", epochs=1),
                           settings(objective="dpo", epochs=2)) == {"epochs": (1, 2)}
    assert run_differences(settings(objective="distill", epochs=1), settings(objective="distill", epochs=2)) == {}


def test_adapter_differences_compare_peft_names_with_ours():
    peft = {"r": 8, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["v_proj", "q_proj"]}
    assert adapter_differences(peft, LoraSettings().model_dump()) == {}
    assert adapter_differences(peft, LoraSettings(r=4).model_dump()) == {"r": (8, 4)}
    assert adapter_differences(peft, {**peft, "lora_alpha": 16}) == {"alpha": (32, 16)}


def _ray_storage(folder, registered, latest, stray=()):
    """A checkpoint folder laid out as Ray Train 2.60 leaves it (the snapshot names registered checkpoints)."""
    folder.mkdir(parents=True)
    for name in [*registered, *stray]:
        (folder / name).mkdir()
        (folder / name / "trainer_state.pt").write_bytes(b"x")
    result = lambda name: {"version": 0, "checkpoint_dir_name": name, "metrics": {"epoch": registered.index(name)}}  # noqa: E731
    (folder / SNAPSHOT).write_text(json.dumps({
        "ray_version": "2.60.0", "checkpoint_results": [result(n) for n in registered],
        "checkpoint_report_indices": list(range(len(registered))), "latest_checkpoint_result": result(latest),
        "pending_training_results": [], "pending_validation_specs": [], "current_report_index": len(registered),
        "validated_checkpoint_dir_names": [], "timed_out_validation_checkpoint_dir_names": [],
        "failed_validation_checkpoint_dir_names": []}))


def test_checkpoints_ray_never_registered_are_removed_and_registered_ones_kept(tmp_path):
    storage = tmp_path / "ray" / "train"
    # Ordered by score (val_loss), as Ray keeps them; the latest is the one a resume starts from.
    _ray_storage(storage, ["checkpoint_b", "checkpoint_a"], latest="checkpoint_b", stray=["checkpoint_c"])
    assert registered_checkpoints(storage) == ["checkpoint_a", "checkpoint_b"]
    assert remove_unregistered_checkpoints(storage) == ["checkpoint_c"]
    assert sorted(p.name for p in storage.iterdir()) == ["checkpoint_a", "checkpoint_b", SNAPSHOT]


def test_without_a_snapshot_every_checkpoint_folder_is_unregistered_and_an_unreadable_one_deletes_nothing(tmp_path):
    storage = tmp_path / "train"
    (storage / "checkpoint_x").mkdir(parents=True)
    assert registered_checkpoints(storage) == [] and remove_unregistered_checkpoints(storage) == ["checkpoint_x"]
    (storage / "checkpoint_y").mkdir()
    (storage / SNAPSHOT).write_text('{"checkpoint_res')  # cut short
    assert remove_unregistered_checkpoints(storage) == [] and (storage / "checkpoint_y").is_dir()
    with pytest.raises(ValueError, match="not readable JSON"):
        registered_checkpoints(storage)


class _WritesAFile:
    """Unpickling this calls Path.write_text: what a planted checkpoint could do in every worker."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (type(self.target).write_text, (self.target, "ran"))


def test_a_trainer_state_that_would_run_code_is_refused_unloaded(tmp_path):
    marker = tmp_path / "marker"
    torch.save({"model": {}, "epoch": _WritesAFile(marker)}, tmp_path / "trainer_state.pt")
    with pytest.raises(UnsafeCheckpointError, match="trainer_state.pt holds Python objects"):
        load_trainer_state(tmp_path / "trainer_state.pt")
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the refusal is torch's weights_only check, not a name filter
        torch.load(tmp_path / "trainer_state.pt", weights_only=True)


@pytest.mark.parametrize("kind", ["step", "cosine"])
def test_saved_optimiser_and_scheduler_state_loads_as_data_and_resumes_the_schedule(tmp_path, kind):
    def build():
        torch.manual_seed(0)
        weight = torch.nn.Parameter(torch.randn(4))
        optimizer = torch.optim.AdamW([weight], lr=1e-2)
        return weight, optimizer, make_scheduler(optimizer, kind, steps_per_epoch=3, epochs=4)

    def step(weight, optimizer, scheduler):
        optimizer.zero_grad()
        (weight ** 2).sum().backward()
        optimizer.step()
        scheduler.step()

    weight, optimizer, scheduler = build()
    for _ in range(5):
        step(weight, optimizer, scheduler)
    torch.save({"model": {"w": weight.detach().clone()}, "optim": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": 1, "best": math.inf}, tmp_path / "trainer_state.pt")
    for _ in range(4):  # the uninterrupted run goes on
        step(weight, optimizer, scheduler)

    state = load_trainer_state(tmp_path / "trainer_state.pt")
    resumed_weight, resumed_optimizer, resumed_scheduler = build()
    with torch.no_grad():
        resumed_weight.copy_(state["model"]["w"])
    resumed_optimizer.load_state_dict(state["optim"])
    resumed_scheduler.load_state_dict({**resumed_scheduler.state_dict(), **scheduler_position(state["scheduler"])})
    for _ in range(4):
        step(resumed_weight, resumed_optimizer, resumed_scheduler)
    assert state["best"] == math.inf and state["epoch"] == 1
    assert resumed_scheduler.get_last_lr() == pytest.approx(scheduler.get_last_lr(), rel=1e-12)
    assert torch.allclose(resumed_weight, weight)
