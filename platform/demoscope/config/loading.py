"""Load a job config from YAML and ``key=value`` overrides.

One pydantic model describes each job. A config is built from, in order of
precedence (last wins): the model's defaults, a YAML file, explicit CLI flags,
and ``key=value`` overrides, where ``a.b=c`` reaches into nested models.
Values are parsed as YAML scalars, so ``epochs=3`` is an int and
``inputs=[a.sav,b.sav]`` a list. Unknown keys are errors that list the valid
ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from demoscope.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into the nested dict ``{"a": {"b": 1}, "c": "x"}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} is not of the form key=value (nested keys as a.b=value)")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {pair!r} sets a key inside {part!r}, which is already a value")
        node[parts[-1]] = value
    return out


def merge_settings(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``extra`` into ``base`` (nested dicts merge; other values replace)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_settings(merged[key], value)
        else:
            merged[key] = value
    return merged


def check_keys(model: type[BaseModel], data: dict[str, Any], prefix: str = "") -> None:
    """Reject unknown keys with the list of valid ones, recursing into sub-models."""
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            valid = ", ".join(sorted(fields))
            raise ConfigError(f"unknown config key {prefix + key!r} for {model.__name__}; valid keys: {valid}")
        annotation = fields[key].annotation
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            check_keys(annotation, value, prefix=f"{prefix}{key}.")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def load_config(
    model: type[M],
    config_file: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
) -> M:
    """Build a validated ``model`` from a YAML file, CLI flags and ``key=value`` overrides."""
    data: dict[str, Any] = read_yaml(config_file) if config_file else {}
    data = merge_settings(data, {k: v for k, v in (flags or {}).items() if v is not None})
    data = merge_settings(data, parse_overrides(overrides or []))
    check_keys(model, data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid {model.__name__}: {problems}") from None


def save_config(config: BaseModel, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically) so a run can be reproduced."""
    from demoscope.io import atomic_write_text

    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return atomic_write_text(Path(path), text)
