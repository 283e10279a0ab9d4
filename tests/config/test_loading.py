"""Configs: YAML, flags and key=value overrides, with errors that list valid keys."""

import pytest
from pydantic import BaseModel

from demoscope.config import load_config, parse_overrides, save_config
from demoscope.errors import ConfigError


class Inner(BaseModel):
    r: int = 8
    alpha: float = 32.0


class Outer(BaseModel):
    name: str = "x"
    lora: Inner = Inner()
    inputs: list[str] = []


def test_nested_overrides_parse_as_yaml_scalars():
    assert parse_overrides(["lora.r=16", "name=abc", "inputs=[a,b]"]) == {"lora": {"r": 16}, "name": "abc",
                                                                          "inputs": ["a", "b"]}


def test_precedence_defaults_yaml_flags_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: from-yaml\nlora: {r: 4, alpha: 8}\n")
    config = load_config(Outer, path, flags={"name": "from-flag", "inputs": None}, overrides=["lora.r=2"])
    assert config.name == "from-flag" and config.lora.r == 2 and config.lora.alpha == 8.0 and config.inputs == []


def test_unknown_nested_key_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown config key 'lora.rank' for Inner; valid keys: alpha, r"):
        load_config(Outer, overrides=["lora.rank=3"])


def test_bad_value_names_the_field():
    with pytest.raises(ConfigError, match=r"lora.r: Input should be a valid integer"):
        load_config(Outer, overrides=["lora.r=many"])


def test_malformed_override_and_bad_yaml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not of the form key=value"):
        parse_overrides(["justakey"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, bad)


def test_saved_config_round_trips(tmp_path):
    config = load_config(Outer, overrides=["lora.alpha=2.5", "inputs=[x]"])
    path = save_config(config, tmp_path / "run" / "config.yaml")
    assert load_config(Outer, path) == config
