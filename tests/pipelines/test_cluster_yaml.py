"""cluster.yaml is a valid Ray 2.60 cluster-launcher config, checked with Ray's own schema."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"
SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA.read_text())


def _prepared(config: dict) -> dict:
    """What `ray up` validates: the config merged with the provider's defaults.yaml."""
    return prepare_config(copy.deepcopy(config))


def test_matches_ray_schema(config, schema):
    jsonschema.validate(config, schema)


def test_passes_ray_validator(config):
    # validate_config needs the defaults filled in (e.g. cluster_synced_files), as `ray up` does.
    validate_config(_prepared(config))


def test_bogus_top_level_key_is_rejected(config, schema):
    broken = copy.deepcopy(config)
    broken["not_a_ray_key"] = True
    with pytest.raises(jsonschema.ValidationError, match="not_a_ray_key"):
        jsonschema.validate(broken, schema)
    with pytest.raises(jsonschema.ValidationError, match="not_a_ray_key"):
        validate_config(_prepared(broken))


def test_gpu_worker_type(config):
    head = config["head_node_type"]
    workers = {name: t for name, t in config["available_node_types"].items() if name != head}
    assert len(workers) == 1
    (worker,) = workers.values()
    assert worker["resources"]["GPU"] >= 1
    assert worker.get("min_workers", 0) == 0
    assert worker["max_workers"] >= 1
    assert config["available_node_types"][head]["resources"].get("GPU", 0) == 0


def test_setup_commands_per_node_kind(config):
    prepared = _prepared(config)  # setup_commands prepended to head_ and worker_setup_commands
    head = " ".join(prepared["head_setup_commands"])
    worker = " ".join(prepared["worker_setup_commands"])
    assert "constraints-cpu.txt" in head and "-e ~/demoscope" in head
    assert "demoscope[gpu]" in worker
    assert "constraints-cpu.txt" not in worker  # vLLM pins its own CUDA torch
    assert "[gpu]" not in head
    # no node type overrides the global worker_setup_commands (that would drop the gpu install)
    assert not any("worker_setup_commands" in t for t in config["available_node_types"].values())


def test_token_auth_and_project_mount(config):
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command
    assert config["file_mounts"]["~/demoscope"] == "."
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert ".venv" in config["rsync_exclude"]
