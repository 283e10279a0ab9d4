"""Search spaces for sweeps: a small YAML vocabulary turned into Ray Tune domains.

    lr: {loguniform: [1.0e-4, 1.0e-2]}
    lora.r: {grid: [4, 8, 16]}
    batch_size: {choice: [8, 16]}
    warmup_ratio: {uniform: [0.0, 0.2]}
    epochs: 3                      # a plain value is fixed for every trial

Keys are the job's config keys, nested with dots as on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from demoscope.config.loading import read_yaml
from demoscope.errors import ConfigError

KINDS = ("grid", "choice", "uniform", "loguniform", "randint")


def _check_spec(key: str, spec: Any) -> None:
    """Raise ConfigError, naming the key, when a YAML entry is not a value or one valid domain."""
    if not isinstance(spec, dict):
        return
    if len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise ConfigError(f"search space key {key!r}: expected one of {{{', '.join(KINDS)}: ...}}, got {spec!r}")
    kind, values = next(iter(spec.items()))
    if kind in ("grid", "choice"):
        if not isinstance(values, list) or not values:
            raise ConfigError(f"search space key {key!r}: {kind} needs a non-empty list, got {values!r}")
        return
    if not isinstance(values, list) or len(values) != 2 or not all(isinstance(v, (int, float)) for v in values):
        raise ConfigError(f"search space key {key!r}: {kind} needs [low, high], got {values!r}")
    low, high = values
    if not low < high or (kind == "loguniform" and low <= 0):
        raise ConfigError(f"search space key {key!r}: {kind} needs 0 < low < high (log) or low < high, got {values!r}")


def read_space(path: str | Path) -> dict[str, Any]:
    """The flat ``{dotted key: YAML spec or value}`` of a search-space file, checked without importing Ray.

    Ray reads its environment when first imported, so the driver checks the
    file before :func:`demoscope.pipelines.runtime.init_ray` and turns it into
    Tune domains (:func:`to_domains`) after.
    """
    data = read_yaml(path)
    if not data:
        raise ConfigError(f"search space {path} is empty; give at least one KEY: {{grid: [...]}}")
    for key, spec in data.items():
        _check_spec(str(key), spec)
    return {str(key): spec for key, spec in data.items()}


def to_domains(space: dict[str, Any]) -> dict[str, Any]:
    """Checked YAML specs (from :func:`read_space`) as Ray Tune domains; plain values stay fixed."""
    from ray import tune

    def domain(spec: Any):
        if not isinstance(spec, dict):
            return spec
        kind, values = next(iter(spec.items()))
        if kind in ("grid", "choice"):
            return tune.grid_search(values) if kind == "grid" else tune.choice(values)
        return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](*values)

    return {key: domain(spec) for key, spec in space.items()}


def load_space(path: str | Path) -> dict[str, Any]:
    """The flat ``{dotted key: Tune domain or value}`` param space of a YAML file (errors name the key)."""
    return to_domains(read_space(path))


def trial_settings(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's flat ``{dotted key: value}`` as the nested dict a job config merges."""
    nested: dict[str, Any] = {}
    for key, value in params.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested
